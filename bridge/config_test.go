package bridge

import (
	"strings"
	"testing"

	"github.com/caarlos0/env/v11"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		vars map[string]string
		want []string // every fragment must be in the error; none means valid
	}{
		{name: "defaults", vars: nil},
		{name: "small body cap", vars: map[string]string{"MAX_BODY_BYTES": "10"}, want: []string{"MISTBRIDGE_MAX_BODY_BYTES=10 is invalid", "at least 1024"}},
		{name: "in-flight bytes below two bodies", vars: map[string]string{"MAX_BODY_BYTES": "4096", "MAX_INFLIGHT_BYTES": "5000"}, want: []string{"MISTBRIDGE_MAX_INFLIGHT_BYTES=5000", "twice MISTBRIDGE_MAX_BODY_BYTES"}},
		{name: "in-flight bytes one byte short", vars: map[string]string{"MAX_BODY_BYTES": "4096", "MAX_INFLIGHT_BYTES": "8703"}, want: []string{"MISTBRIDGE_MAX_INFLIGHT_BYTES=8703", "8704"}},
		{name: "zero events", vars: map[string]string{"MAX_INFLIGHT_EVENTS": "0"}, want: []string{"MISTBRIDGE_MAX_INFLIGHT_EVENTS=0", "at least 1"}},
		{name: "negative timeout", vars: map[string]string{"DELIVERY_TIMEOUT": "-1s"}, want: []string{"MISTBRIDGE_DELIVERY_TIMEOUT=-1s", "positive duration"}},
		{name: "retry max below initial", vars: map[string]string{"RETRY_INITIAL": "1s", "RETRY_MAX": "10ms"}, want: []string{"MISTBRIDGE_RETRY_MAX=10ms", "MISTBRIDGE_RETRY_INITIAL"}},
		{name: "bad receiver", vars: map[string]string{"RECEIVER": "a/b"}, want: []string{`MISTBRIDGE_RECEIVER="a/b"`, "letters, digits"}},
		{name: "bad routes", vars: map[string]string{"ROUTES": "location=redis"}, want: []string{"MISTBRIDGE_ROUTES", `unknown sink "redis"`, "nats or kafka"}},
		{name: "route naming a sink twice", vars: map[string]string{"ROUTES": "x=kafka+kafka"}, want: []string{"MISTBRIDGE_ROUTES", "twice"}},
		{name: "bad topics", vars: map[string]string{"TOPICS": "device-[,alarms"}, want: []string{"MISTBRIDGE_TOPICS", "patterns"}},
		{name: "route without sinks", vars: map[string]string{"ROUTES": "location"}, want: []string{"pattern=sink"}},
		{name: "two problems at once", vars: map[string]string{"MAX_INFLIGHT_EVENTS": "0", "RETRY_AFTER": "0s"}, want: []string{"MAX_INFLIGHT_EVENTS", "RETRY_AFTER"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			vars := tt.vars
			if vars == nil {
				vars = map[string]string{}
			}
			if err := env.ParseWithOptions(&c, env.Options{Environment: vars}); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("defaults invalid: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %v", tt.vars)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	routes, err := parseRoutes(" location*=nats , *=nats+kafka ")
	if err != nil {
		t.Fatal(err)
	}
	r := &Router{order: []string{"nats", "kafka"}, routes: routes}
	for topic, want := range map[string]string{"location": "nats", "location-asset": "nats", "device-events": "nats+kafka"} {
		if got := strings.Join(r.sinksFor(topic), "+"); got != want {
			t.Errorf("%s -> %s, want %s", topic, got, want)
		}
	}
	r.routes, _ = parseRoutes("alarms=kafka")
	if got := r.sinksFor("audits"); len(got) != 0 {
		t.Errorf("unrouted topic went to %v", got)
	}
	r.routes = nil
	if got := strings.Join(r.sinksFor("x"), "+"); got != "nats+kafka" {
		t.Errorf("no routes: %s", got)
	}
}
