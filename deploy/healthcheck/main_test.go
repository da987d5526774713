package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestDefaultURL(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{nil, "http://127.0.0.1:8080/healthz"},
		{map[string]string{"MISTBRIDGE_LISTEN_ADDR": ":9090"}, "http://127.0.0.1:9090/healthz"},
		{map[string]string{"MISTBRIDGE_LISTEN_ADDR": "0.0.0.0:8081"}, "http://127.0.0.1:8081/healthz"},
		{map[string]string{"MISTBRIDGE_LISTEN_ADDR": "[::]:8082"}, "http://127.0.0.1:8082/healthz"},
		{map[string]string{"MISTBRIDGE_LISTEN_ADDR": "10.1.2.3:8083"}, "http://10.1.2.3:8083/healthz"},
		{map[string]string{"MISTBRIDGE_LISTEN_ADDR": "[::1]:8084"}, "http://[::1]:8084/healthz"},
		{map[string]string{"MISTBRIDGE_LISTEN_ADDR": "not an address"}, "http://127.0.0.1:8080/healthz"},
		{map[string]string{"MISTBRIDGE_LISTEN_ADDR": ":9090", "HEALTHCHECK_URL": "http://x:1/readyz"}, "http://x:1/readyz"},
	} {
		if got := defaultURL(func(k string) string { return tc.env[k] }); got != tc.want {
			t.Errorf("env %v: got %s, want %s", tc.env, got, tc.want)
		}
	}
}

func TestCheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.Write([]byte("ok"))
		case "/slow":
			time.Sleep(500 * time.Millisecond)
		default:
			http.Error(w, `{"nats":"down"}`, http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	if err := check(srv.URL+"/healthz", time.Second); err != nil {
		t.Errorf("healthy server: %v", err)
	}
	if err := check(srv.URL+"/readyz", time.Second); err == nil {
		t.Error("503 answer: want an error")
	}
	if err := check(srv.URL+"/slow", 50*time.Millisecond); err == nil {
		t.Error("slow answer: want a timeout error")
	}
	srv.Close()
	if err := check(srv.URL+"/healthz", time.Second); err == nil {
		t.Error("nothing listening: want an error")
	}
}
