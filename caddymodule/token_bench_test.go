package caddymodule

import (
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/internal/testredis"
)

// BenchmarkTokenEndpoint measures the JWT bearer grant through the
// in-process Caddy over loopback HTTP, with parallel keep-alive clients,
// on the memory store and on a real redis-server. Assertions (RS256, each
// with its own jti) are signed before the timer starts: the figure is the
// gateway's, not the issuer's.
//
//	go test -run '^$' -bench BenchmarkTokenEndpoint -benchtime 3000x ./caddymodule/
func BenchmarkTokenEndpoint(b *testing.B) {
	for _, backend := range []string{"memory", "redis"} {
		b.Run(backend, func(b *testing.B) {
			store := "store memory"
			if backend == "redis" {
				store = "store redis " + testredis.Start(b).URL()
			}
			g := startGateway(b, store, "refresh_token_ttl off")
			bodies := make([]string, b.N)
			var wg sync.WaitGroup
			var next atomic.Int64
			for range runtime.GOMAXPROCS(0) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := int(next.Add(1) - 1); i < b.N; i = int(next.Add(1) - 1) {
						bodies[i] = jwtBearerForm(g.assertion(b, nil)).Encode()
					}
				}()
			}
			wg.Wait()
			tr := &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			auth := "Basic " + basicValue("app", g.f.secret)
			// The first request pays the client secret's hash once.
			if r := g.token(b, jwtBearerForm(g.assertion(b, nil))); r.status != 200 {
				b.Fatal(r)
			}
			var idx atomic.Int64
			b.SetParallelism(4)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					body := bodies[idx.Add(1)-1]
					req, _ := http.NewRequest(http.MethodPost, g.tokenURL, strings.NewReader(body))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					req.Header.Set("Authorization", auth)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

func basicValue(id, secret string) string {
	req, _ := http.NewRequest(http.MethodGet, "http://x", nil)
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}
