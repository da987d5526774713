package bridge

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"

	"github.com/mistbridge/mistbridge/codec"
)

// Delivery is the one seam between the ingress and the brokers: the
// [Router] implements it, and a spool wraps the Router and implements it
// too. Implementations are safe for concurrent use.
type Delivery interface {
	// Deliver returns nil only when every event is safe: acknowledged by
	// every broker it is routed to, or written durably to a local spool
	// that will deliver it. It neither modifies events nor keeps them, or
	// anything they point to, once it returns: the caller reuses their
	// memory for its next request.
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
	// Deliver is [Delivery.Deliver] for one output. events may be the very
	// slice other outputs are given at the same time: Deliver must not
	// modify it, nor keep it or the events once it returns.
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

// Group is the events of one request that go to one output, in their
// order.
type Group struct {
	Output string
	Events []*codec.Event
}

// Plan groups events by the output each is routed to, keeping their order
// within each output. It fails, wrapping [ErrUnrouted], when an event's
// topic is routed nowhere. As with [Router.Groups], which does the same
// without a map, a value may be events itself: read it, do not modify it.
func (r *Router) Plan(events []*codec.Event) (map[string][]*codec.Event, error) {
	var buf [4]Group
	groups, err := r.Groups(buf[:0], events)
	if err != nil {
		return nil, err
	}
	perOutput := make(map[string][]*codec.Event, len(groups))
	for _, g := range groups {
		perOutput[g.Output] = g.Events
	}
	return perOutput, nil
}

// Groups appends to dst one [Group] per output that events are routed to,
// in configuration order, and returns it. It fails, wrapping
// [ErrUnrouted], when an event's topic is routed nowhere, appending
// nothing.
//
// When every event goes to the same outputs (always so without routes, and
// for a request of one topic) each group's Events is events itself, and
// Groups allocates nothing beyond dst's growth. Otherwise each group holds
// a new slice of its events, in order.
func (r *Router) Groups(dst []Group, events []*codec.Event) ([]Group, error) {
	if len(events) == 0 {
		return dst, nil
	}
	var names []string
	same := true
	for i, ev := range events {
		if i > 0 && ev.Topic == events[i-1].Topic {
			continue
		}
		if err := r.Check(ev.Topic); err != nil {
			return dst, err
		}
		if i == 0 {
			names = r.sinksFor(ev.Topic)
		} else if !slices.Equal(names, r.sinksFor(ev.Topic)) {
			same = false
		}
	}
	if same {
		for _, n := range r.order {
			if slices.Contains(names, n) {
				dst = append(dst, Group{Output: n, Events: events})
			}
		}
		return dst, nil
	}
	first := len(dst)
	for _, n := range r.order {
		dst = append(dst, Group{Output: n})
	}
	for i, ev := range events {
		if i == 0 || ev.Topic != events[i-1].Topic {
			names = r.sinksFor(ev.Topic)
		}
		for _, n := range names {
			g := &dst[first+slices.Index(r.order, n)]
			g.Events = append(g.Events, ev)
		}
	}
	// Drop the outputs no event goes to, keeping the order.
	kept := slices.DeleteFunc(dst[first:], func(g Group) bool { return len(g.Events) == 0 })
	return dst[:first+len(kept)], nil
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
// is routed to it, all outputs in parallel (the first in configuration
// order on the calling goroutine, each other on one of its own). When an
// event's topic is not routed anywhere, nothing is delivered and the error
// wraps [ErrUnrouted]. Otherwise it returns the errors of every output
// that failed, joined in configuration order.
func (r *Router) Deliver(ctx context.Context, events []*codec.Event) error {
	if len(events) == 0 {
		return nil
	}
	var buf [4]Group
	groups, err := r.Groups(buf[:0], events)
	if err != nil {
		return err
	}
	if len(groups) == 1 {
		return r.publish(ctx, groups[0])
	}
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[1+i] = r.publish(ctx, g)
		}()
	}
	errs[0] = r.publish(ctx, groups[0])
	wg.Wait()
	return errors.Join(errs...)
}

// publish delivers g to its output, in a span of its own when traced.
func (r *Router) publish(ctx context.Context, g Group) error {
	if !traced(ctx) {
		return r.outputs[g.Output].Deliver(ctx, g.Events)
	}
	ctx, sp := startSpan(ctx, "publish "+g.Output)
	sp.SetAttributes(attribute.String("mistbridge.sink", g.Output), attribute.Int("mistbridge.events", len(g.Events)))
	err := r.outputs[g.Output].Deliver(ctx, g.Events)
	endSpan(sp, err)
	return err
}
