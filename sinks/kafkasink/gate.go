package kafkasink

import "sync"

// gate counts what is in progress (the calls of the sink) and, once
// shut, refuses more and tells when the last one has left. Unlike a sync.WaitGroup it can be waited for with a deadline, and
// an enter that races with the shutting is refused rather than lost.
type gate struct {
	mu   sync.Mutex
	n    int
	shut bool
	idle chan struct{} // closed once shut and n == 0
}

func newGate() *gate { return &gate{idle: make(chan struct{})} }

// enter counts one more, or returns false once the gate is shut.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut {
		return false
	}
	g.n++
	return true
}

// leave ends what enter counted.
func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.shut && g.n == 0 {
		close(g.idle)
	}
}

// close shuts the gate. It returns false when it was shut already.
func (g *gate) close() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut {
		return false
	}
	g.shut = true
	if g.n == 0 {
		close(g.idle)
	}
	return true
}

// done is closed once the gate is shut and nothing is left in it.
func (g *gate) done() <-chan struct{} { return g.idle }
