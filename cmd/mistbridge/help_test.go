package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestEveryVariableHasHelp: -h describes every variable in one line.
func TestEveryVariableHasHelp(t *testing.T) {
	for _, v := range variables() {
		if v.Help == "" {
			t.Errorf("%s (field %s) has no description: give the field a doc comment and run go generate ./cmd/mistbridge", v.Key, v.Field)
		}
	}
	var b bytes.Buffer
	printUsage(&b)
	for _, v := range variables() {
		if v.Help != "" && !bytes.Contains(b.Bytes(), []byte(v.Help)) {
			t.Errorf("-h does not print the description of %s", v.Key)
		}
	}
}

// TestHelpIsGenerated: help_gen.go is what the generator makes from the
// doc comments now, so a changed comment cannot leave -h stale.
func TestHelpIsGenerated(t *testing.T) {
	out := filepath.Join(t.TempDir(), "help_gen.go")
	cmd := exec.Command("go", "run", "./internal/helpgen", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helpgen: %v\n%s", err, msg)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("help_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, want) {
		t.Fatal("help_gen.go is stale: run go generate ./cmd/mistbridge")
	}
}
