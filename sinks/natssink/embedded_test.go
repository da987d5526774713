package natssink_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mistbridge/mistbridge/sinks/natssink"
)

// TestEmbeddedBusyPort: a busy port is reported at once, naming the
// address and the bind error, instead of a readiness timeout.
func TestEmbeddedBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t0 := time.Now()
	emb, err := natssink.StartEmbedded(t.TempDir(), ln.Addr().String(), nil)
	if err == nil {
		emb.Shutdown()
		t.Fatal("StartEmbedded on a busy port succeeded")
	}
	if !strings.Contains(err.Error(), ln.Addr().String()) || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error %q does not name the address and the bind error", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("StartEmbedded took %v to fail, want at once", d)
	}
}
