package main

import (
	"runtime/debug"
	"testing"
)

// TestGCPercent: without GOGC the bridge runs at defaultGCPercent; with
// it, the runtime's reading of GOGC stands.
func TestGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if got := setGCPercent(getenv); got != defaultGCPercent {
		t.Errorf("without GOGC: %d, want %d", got, defaultGCPercent)
	}
	if cur := debug.SetGCPercent(defaultGCPercent); cur != defaultGCPercent {
		t.Errorf("the runtime runs at %d, want %d", cur, defaultGCPercent)
	}
	debug.SetGCPercent(150) // as the runtime would have read GOGC=150
	env["GOGC"] = "150"
	if got := setGCPercent(getenv); got != 150 {
		t.Errorf("with GOGC=150: %d, want 150 kept", got)
	}
	if cur := debug.SetGCPercent(150); cur != 150 {
		t.Errorf("the runtime runs at %d after GOGC=150, want 150", cur)
	}
}
