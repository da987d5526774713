// Command healthcheck probes the bridge from inside its container, where the
// distroless image has no shell and no curl: it GETs the health URL and exits
// 0 on a 2xx answer, 1 otherwise. The Dockerfile's HEALTHCHECK runs it.
//
// The URL is, first found: the -url flag; $HEALTHCHECK_URL; else
// http://127.0.0.1:<port>/healthz with the port of $MISTBRIDGE_LISTEN_ADDR
// (the bridge's own variable, so the probe follows a changed listen address),
// 8080 when it is unset.
//
//	healthcheck                                   # liveness: /healthz
//	healthcheck -url http://127.0.0.1:8080/readyz # readiness: every sink writable
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	url := flag.String("url", defaultURL(os.Getenv), "URL to GET (default $HEALTHCHECK_URL, else from $MISTBRIDGE_LISTEN_ADDR)")
	timeout := flag.Duration("timeout", 3*time.Second, "give up after this long")
	flag.Parse()
	if err := check(*url, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

// defaultURL derives the URL to probe from the environment.
func defaultURL(getenv func(string) string) string {
	if u := getenv("HEALTHCHECK_URL"); u != "" {
		return u
	}
	host, port := "127.0.0.1", "8080"
	if addr := getenv("MISTBRIDGE_LISTEN_ADDR"); addr != "" {
		if h, p, err := net.SplitHostPort(addr); err == nil {
			if p != "" && p != "0" {
				port = p
			}
			// A wildcard listens on loopback too; a specific address may not.
			if ip := net.ParseIP(h); h != "" && h != "localhost" && (ip == nil || !ip.IsUnspecified()) {
				host = h
			}
		}
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz"
}

// check GETs url and fails unless the answer is 2xx within timeout.
func check(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil}} // never via a proxy from the environment
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s %s", url, resp.Status, body)
	}
	return nil
}
