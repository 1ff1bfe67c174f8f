package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/internal/testredis"
)

// BenchmarkAuth measures jwt_grant_auth next to a plain respond route of
// the same in-process Caddy, over loopback HTTP with parallel keep-alive
// clients, so that its cost reads as a fraction of Caddy's own:
//
//	go test -run '^$' -bench BenchmarkAuth -benchtime 5s ./caddymodule/
func BenchmarkAuth(b *testing.B) {
	for _, backend := range []string{"memory", "redis"} {
		b.Run(backend, func(b *testing.B) {
			store := ""
			if backend == "redis" {
				store = "store redis " + testredis.Start(b).URL()
			}
			e := startEdge(b, edgeConfig{store: store})
			tok := e.mint(b, "", "read admin").str("access_token")
			for _, route := range []struct{ name, path string }{
				{"respond", "/unprotected"},
				{"jwt_grant_auth", "/any"},
				{"jwt_grant_auth+scope", "/scoped"},
			} {
				b.Run(route.name, func(b *testing.B) { benchGet(b, e.api+route.path, tok) })
			}
		})
	}
}

// benchGet sends GETs with the bearer token from 4 clients per CPU.
func benchGet(b *testing.B, u, token string) {
	tr := &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		for pb.Next() {
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Error(fmt.Sprintf("status %d", resp.StatusCode))
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
