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

// Delivery takes admitted events to their brokers. Deliver returns nil only
// when every event is safe: acknowledged by every broker it is routed to
// (or, later, written durably to a local spool that will deliver it). A
// spool slots in as a Delivery wrapping the [Router].
type Delivery interface {
	Deliver(ctx context.Context, events []*codec.Event) error
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

// Deliver implements [Delivery]: each output gets the events whose topic
// is routed to it, all outputs in parallel. When an event's topic is not
// routed anywhere, nothing is delivered and the error wraps [ErrUnrouted].
// Otherwise it returns the errors of every output that failed, joined.
func (r *Router) Deliver(ctx context.Context, events []*codec.Event) error {
	if len(events) == 0 {
		return nil
	}
	perOutput := make(map[string][]*codec.Event, len(r.order))
	routed := map[string][]string{}
	for _, ev := range events {
		names, ok := routed[ev.Topic]
		if !ok {
			if err := r.Check(ev.Topic); err != nil {
				return err
			}
			names = r.sinksFor(ev.Topic)
			routed[ev.Topic] = names
		}
		for _, n := range names {
			perOutput[n] = append(perOutput[n], ev)
		}
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
