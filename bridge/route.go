package bridge

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/mistbridge/mistbridge/codec"
)

// Delivery is the one seam between the ingress and the brokers: the
// [Router] implements it, and a spool wraps the Router and implements it
// too. Implementations are safe for concurrent use.
type Delivery interface {
	// Deliver returns nil only when every event is safe: acknowledged by
	// every broker it is routed to, or written durably to a local spool
	// that will deliver it.
	Deliver(ctx context.Context, events []*codec.Event) error
	// Check fails (wrapping [ErrUnrouted]) when no route sends topic
	// anywhere, so a request can be refused before it takes room.
	Check(topic string) error
	// Ready tells whether webhooks can be taken now, per sink.
	Ready(ctx context.Context) Readiness
	// Failing reports that events cannot be made safe now (a broker looks
	// down and nothing absorbs it), which turns a 429 into a 503.
	Failing() bool
}

// Readiness is what /readyz shows.
type Readiness struct {
	// Ready is true when the bridge can take webhooks now.
	Ready bool `json:"-"`
	// Sinks maps each sink's name to "ok" or why it is not delivering.
	// The text never carries a broker's address.
	Sinks map[string]string `json:"sinks"`
	// Spool is the spool's state, when there is a spool.
	Spool *SpoolState `json:"spool,omitempty"`
}

// SpoolState is the spool's part of [Readiness].
type SpoolState struct {
	// Events and Bytes are what the spool holds, not yet delivered.
	Events int64 `json:"events"`
	Bytes  int64 `json:"bytes"`
	// MaxBytes is the spool's bound.
	MaxBytes int64 `json:"max_bytes"`
	// OldestAgeSeconds is the age of the oldest spooled event, 0 when empty.
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	// Sinks maps each sink's name to the events spooled for it.
	Sinks map[string]int64 `json:"sinks,omitempty"`
}

// Output is one sink with the delivery policy applied (sinks.Retrying).
type Output interface {
	Name() string
	Deliver(ctx context.Context, events []*codec.Event) error
	Ready(ctx context.Context) error
	// Failing reports that the broker looks down, which turns a 429 into a 503.
	Failing() bool
}

// Router sends each event to the outputs its topic is routed to, all in
// parallel, and waits for all of them. It is safe for concurrent use.
type Router struct {
	outputs map[string]Output
	order   []string // output names in configuration order
	routes  []route
}

type route struct {
	pattern string
	sinks   []string
}

// NewRouter routes with spec (see [Config.Routes]) over outputs. It fails
// when spec is malformed or names an output that is not configured.
func NewRouter(spec string, outputs ...Output) (*Router, error) {
	if len(outputs) == 0 {
		return nil, errors.New("bridge: no sink configured")
	}
	r := &Router{outputs: make(map[string]Output, len(outputs))}
	for _, o := range outputs {
		r.outputs[o.Name()] = o
		r.order = append(r.order, o.Name())
	}
	routes, err := parseRoutes(spec)
	if err != nil {
		return nil, err
	}
	for _, rt := range routes {
		for _, s := range rt.sinks {
			if _, ok := r.outputs[s]; !ok {
				return nil, fmt.Errorf("MISTBRIDGE_ROUTES names sink %q, which is not in MISTBRIDGE_SINKS (%s)", s, strings.Join(r.order, ","))
			}
		}
	}
	r.routes = routes
	return r, nil
}

// parseRoutes parses "pattern=a+b,pattern2=c".
func parseRoutes(spec string) ([]route, error) {
	var routes []route
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		pat, sinkList, ok := strings.Cut(part, "=")
		pat = strings.TrimSpace(pat)
		if !ok || pat == "" || strings.TrimSpace(sinkList) == "" {
			return nil, fmt.Errorf("%q: want pattern=sink[+sink...], e.g. location*=nats", part)
		}
		if _, err := path.Match(pat, ""); err != nil {
			return nil, fmt.Errorf("%q: bad pattern: %v", pat, err)
		}
		rt := route{pattern: pat}
		for _, s := range strings.Split(sinkList, "+") {
			s = strings.TrimSpace(s)
			if s != "nats" && s != "kafka" {
				return nil, fmt.Errorf("%q: unknown sink %q: want nats or kafka", part, s)
			}
			if slices.Contains(rt.sinks, s) {
				return nil, fmt.Errorf("%q names sink %q twice: every event would be written twice", part, s)
			}
			rt.sinks = append(rt.sinks, s)
		}
		routes = append(routes, rt)
	}
	return routes, nil
}

var _ Delivery = (*Router)(nil)

// Output returns the output named name, or nil.
func (r *Router) Output(name string) Output { return r.outputs[name] }

// Outputs returns the outputs in configuration order.
func (r *Router) Outputs() []Output {
	out := make([]Output, len(r.order))
	for i, n := range r.order {
		out[i] = r.outputs[n]
	}
	return out
}

// Failing reports whether any output looks down.
func (r *Router) Failing() bool {
	for _, o := range r.outputs {
		if o.Failing() {
			return true
		}
	}
	return false
}

// sinksFor returns the outputs topic is routed to; a topic no route
// matches goes nowhere when routes are configured.
func (r *Router) sinksFor(topic string) []string {
	if len(r.routes) == 0 {
		return r.order
	}
	for _, rt := range r.routes {
		if ok, _ := path.Match(rt.pattern, topic); ok {
			return rt.sinks
		}
	}
	return nil
}

// ErrSpoolFull is wrapped by a [Delivery] that cannot make events safe
// because its spool is full or cannot be written; it is answered with 503
// and Retry-After, and nothing already spooled is dropped.
var ErrSpoolFull = errors.New("bridge: spool full or failing")

// ErrUnrouted is returned for a topic that no route sends anywhere.
var ErrUnrouted = errors.New("bridge: no route for topic")

// Check returns [ErrUnrouted] (wrapped, naming the topic) when no route
// sends topic anywhere. Deliver checks every event first too; Check lets a
// caller refuse a request before it takes admission room.
func (r *Router) Check(topic string) error {
	if len(r.sinksFor(topic)) == 0 {
		return fmt.Errorf("%w %q (see MISTBRIDGE_ROUTES)", ErrUnrouted, topic)
	}
	return nil
}

// Plan groups events by the output each is routed to, keeping their order
// within each output. It fails, wrapping [ErrUnrouted], when an event's
// topic is routed nowhere.
func (r *Router) Plan(events []*codec.Event) (map[string][]*codec.Event, error) {
	perOutput := make(map[string][]*codec.Event, len(r.order))
	var (
		lastTopic string
		names     []string
	)
	for _, ev := range events {
		if names == nil || ev.Topic != lastTopic {
			if err := r.Check(ev.Topic); err != nil {
				return nil, err
			}
			names, lastTopic = r.sinksFor(ev.Topic), ev.Topic
		}
		for _, n := range names {
			perOutput[n] = append(perOutput[n], ev)
		}
	}
	return perOutput, nil
}

// Ready implements [Delivery]: ready when every output is, each asked in
// parallel within ctx.
func (r *Router) Ready(ctx context.Context) Readiness {
	states := make([]string, len(r.order))
	var wg sync.WaitGroup
	for i, n := range r.order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			states[i] = readyState(ctx, r.outputs[n])
		}()
	}
	wg.Wait()
	rd := Readiness{Ready: true, Sinks: make(map[string]string, len(r.order))}
	for i, n := range r.order {
		rd.Sinks[n] = states[i]
		if states[i] != "ok" {
			rd.Ready = false
		}
	}
	return rd
}

// readyState is "ok" or a short reason safe to show anyone: a broker's
// error carries its address, so only its kind is shown.
func readyState(ctx context.Context, o Output) string {
	err := o.Ready(ctx)
	switch {
	case err == nil:
		return "ok"
	case ctx.Err() != nil:
		return "not answering"
	default:
		return "not delivering"
	}
}

// Deliver implements [Delivery]: each output gets the events whose topic
// is routed to it, all outputs in parallel. When an event's topic is not
// routed anywhere, nothing is delivered and the error wraps [ErrUnrouted].
// Otherwise it returns the errors of every output that failed, joined.
func (r *Router) Deliver(ctx context.Context, events []*codec.Event) error {
	if len(events) == 0 {
		return nil
	}
	perOutput, err := r.Plan(events)
	if err != nil {
		return err
	}
	if len(perOutput) == 1 {
		for n, evs := range perOutput {
			return r.outputs[n].Deliver(ctx, evs)
		}
	}
	errs := make([]error, 0, len(perOutput))
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for n, evs := range perOutput {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.outputs[n].Deliver(ctx, evs); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
