// Command mistsend posts Mist-shaped webhooks at a bridge: every sample
// file once (the default), or a steady load of generated batches.
//
//	mistsend -url http://localhost:8080/webhooks/mist -secret s3cret
//	mistsend -url ... -secret ... -rate 5000 -duration 30s
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/mistbridge/mistbridge/test/loadgen"
)

func main() {
	var (
		url         = flag.String("url", "http://localhost:8080/webhooks/mist", "webhook URL of the bridge")
		secret      = flag.String("secret", os.Getenv("MISTBRIDGE_WEBHOOK_SECRET"), "HMAC secret (default $MISTBRIDGE_WEBHOOK_SECRET)")
		dir         = flag.String("samples", "", "directory of sample bodies to replay (default: deploy/samples of the repository, found from the working directory)")
		loop        = flag.Duration("every", 0, "replay the samples again at this interval (0: once)")
		ratef       = flag.Float64("rate", 0, "load mode: events per second of generated batches (0: replay samples)")
		batch       = flag.Int("batch", 10, "load mode: events per request")
		concurrency = flag.Int("concurrency", 64, "load mode: requests in flight at most")
		duration    = flag.Duration("duration", 10*time.Second, "load mode: how long")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *ratef > 0 {
		res := loadgen.Run(ctx, loadgen.Config{URL: *url, Secret: *secret, Rate: *ratef, Batch: *batch, Concurrency: *concurrency, Duration: *duration})
		fmt.Println(res)
		return
	}
	if *dir == "" {
		d, err := loadgen.SamplesDir()
		if err != nil {
			fmt.Fprintln(os.Stderr, "mistsend: -samples not given and", err)
			os.Exit(2)
		}
		*dir = d
	}
	samples, err := loadgen.Samples(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mistsend:", err)
		os.Exit(2)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	failed := 0
	for {
		for _, s := range samples {
			code, answer, err := loadgen.Post(ctx, client, *url, *secret, s.Body)
			if err != nil {
				fmt.Fprintf(os.Stderr, "%-36s error: %v\n", s.Name, err)
				failed++
				continue
			}
			fmt.Printf("%-36s %d %s", s.Name, code, answer)
			if code != http.StatusOK {
				failed++
			}
		}
		if *loop <= 0 || ctx.Err() != nil {
			break
		}
		select {
		case <-time.After(*loop):
		case <-ctx.Done():
		}
	}
	if failed > 0 {
		os.Exit(1)
	}
}
