package receivers_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mistbridge/mistbridge/bridge"
	"github.com/mistbridge/mistbridge/bridge/auth"
	"github.com/mistbridge/mistbridge/test/loadgen"
)

// loadgenSign is the hex HMAC-SHA256 of body, as GitHub-style hmac
// receivers sign.
func loadgenSign(secret string, body []byte) string { return loadgen.Sign(secret, body) }

// BenchmarkReceiverLookup measures the hot path's receiver lookup through
// the real handler: a request to one of 1000 managed receivers, refused
// by its bearer check before the body is read (lookup + precheck + a 401
// answer), and a request to an unknown name (lookup + 404). The churn
// variant swaps the whole set with SetReceivers on another goroutine all
// along: readers take no lock.
func BenchmarkReceiverLookup(b *testing.B) {
	managed := make([]*bridge.Receiver, 1000)
	for i := range managed {
		v, err := auth.NewBearer([]string{fmt.Sprint("token-", i)})
		if err != nil {
			b.Fatal(err)
		}
		managed[i] = &bridge.Receiver{Name: fmt.Sprintf("r-%d", i), Verifier: v}
	}
	mist, _ := auth.NewMist([]string{envSecret})
	srv, err := bridge.New(defaults[bridge.Config](b, nil), bridge.Options{
		Router:    mustRouter(b),
		Receivers: []*bridge.Receiver{{Name: "mist", Verifier: mist}},
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.SetReceivers(managed); err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	run := func(b *testing.B, target string, want int) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(`{}`))
				req.Header.Set("Authorization", "Bearer wrong")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != want {
					b.Errorf("%s: %d, want %d", target, w.Code, want)
					return
				}
			}
		})
	}
	b.Run("known-401", func(b *testing.B) { run(b, "/webhooks/r-500", 401) })
	b.Run("unknown-404", func(b *testing.B) { run(b, "/webhooks/nobody", 404) })
	b.Run("known-401-with-churn", func(b *testing.B) {
		stop := make(chan struct{})
		done := make(chan struct{})
		swaps := 0
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := srv.SetReceivers(managed); err != nil {
					b.Error(err)
					return
				}
				swaps++
			}
		}()
		run(b, "/webhooks/r-500", 401)
		close(stop)
		<-done
		b.ReportMetric(float64(swaps)/b.Elapsed().Seconds(), "swaps/s")
	})
}

func mustRouter(b *testing.B) *bridge.Router {
	return router(b, slog.New(slog.DiscardHandler))
}
