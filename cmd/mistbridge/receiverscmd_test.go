package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mistbridge/mistbridge/bridge/receivers"
)

func TestReceiversCommand(t *testing.T) {
	store, err := receivers.Open(context.Background(), filepath.Join(t.TempDir(), receivers.FileName), receivers.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	hs := httptest.NewServer(receivers.NewAPI(store, receivers.APIOptions{Tokens: []string{"adm"}, Rate: 1000, Burst: 1000}))
	t.Cleanup(hs.Close)
	env := map[string]string{"MISTBRIDGE_API_URL": hs.URL, "MISTBRIDGE_ADMIN_TOKEN": "adm, other"}
	getenv = func(k string) string { return env[k] }
	t.Cleanup(func() { getenv = nil })

	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := receiversCommand(args, &out, &errb)
		return code, out.String(), errb.String()
	}
	tests := []struct {
		args     []string
		code     int
		out, err string // substrings
	}{
		{[]string{"create", "name=hooks", "authType=bearer", "token=cli-secret-token", "topics=device-*,alarms"}, 0, "token:         ********", ""},
		{[]string{"create", "name=hooks", "authType=none"}, 1, "", "409"},
		{[]string{"create", "name=bad", "authType=basic", "userName=u"}, 1, "", "(field password)"},
		{[]string{"list"}, 0, "hooks  true     bearer  device-*,alarms", ""},
		{[]string{"--json", "list"}, 0, `"receivers":[{`, ""},
		{[]string{"show", "hooks"}, 0, "url:           " + hs.URL + "/webhooks/hooks", ""},
		{[]string{"show", "nobody"}, 3, "", "no receiver"},
		{[]string{"disable", "hooks"}, 0, "enabled:       false", ""},
		{[]string{"enable", "hooks", "--json"}, 0, `"enabled":true`, ""},
		{[]string{"update", "hooks", "topics="}, 0, "topics:        *", ""},
		{[]string{"update", "hooks", "enabled=maybe"}, 2, "", "enabled="},
		{[]string{"update", "hooks", "cli-secret-token"}, 2, "", "field=value"},
		{[]string{"delete", "hooks"}, 0, "deleted hooks", ""},
		{[]string{"delete", "hooks"}, 3, "", "no receiver"},
		{[]string{"--token", "wrong", "list"}, 1, "", "401"},
		{[]string{"frobnicate"}, 2, "", "unknown command"},
		{nil, 2, "", "no command"},
		{[]string{"--url", "ftp://x", "list"}, 2, "", "not an http"},
		{[]string{"-h"}, 0, "Exit codes", ""},
	}
	for _, tt := range tests {
		code, out, errs := run(tt.args...)
		if code != tt.code || !strings.Contains(out, tt.out) || !strings.Contains(errs, tt.err) {
			t.Errorf("receivers %s = %d\nstdout: %s\nstderr: %s\nwant %d, stdout with %q, stderr with %q", strings.Join(tt.args, " "), code, out, errs, tt.code, tt.out, tt.err)
		}
		if strings.Contains(out+errs, "cli-secret-token") {
			t.Errorf("receivers %s printed the token", strings.Join(tt.args, " "))
		}
	}
	env["MISTBRIDGE_ADMIN_TOKEN"] = ""
	if code, _, errs := run("list"); code != 2 || !strings.Contains(errs, "MISTBRIDGE_ADMIN_TOKEN") {
		t.Errorf("without a token: %d %s", code, errs)
	}
}
