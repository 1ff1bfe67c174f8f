package caddymodule

import (
	"errors"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the collectors of SPEC §6, created once per process and
// registered on each new Caddy metrics registry (a config reload brings a
// new one), as reverseproxy does.
type metrics struct {
	grants       *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	jwksFetches  *prometheus.CounterVec
	storeErrors  *prometheus.CounterVec
	authRequests *prometheus.CounterVec
}

var (
	metricsOnce sync.Once
	theMetrics  *metrics
)

func metricsFor(ctx caddy.Context) *metrics {
	metricsOnce.Do(func() {
		const ns, sub = "caddy", "jwt_grant"
		theMetrics = &metrics{
			grants: prometheus.NewCounterVec(prometheus.CounterOpts{
				Namespace: ns, Subsystem: sub, Name: "grants_total",
				Help: "Token endpoint requests by grant type, outcome and reason.",
			}, []string{"grant_type", "outcome", "reason"}),
			latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Namespace: ns, Subsystem: sub, Name: "token_request_duration_seconds",
				Help:    "Token endpoint latency.",
				Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
			}, []string{"grant_type"}),
			jwksFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
				Namespace: ns, Subsystem: sub, Name: "jwks_fetches_total",
				Help: "JWKS fetches by key source and result.",
			}, []string{"kind", "name", "result"}),
			storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
				Namespace: ns, Subsystem: sub, Name: "store_errors_total",
				Help: "Store operations that failed, by operation.",
			}, []string{"op"}),
			authRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
				Namespace: ns, Subsystem: sub, Name: "auth_requests_total",
				Help: "jwt_grant_auth decisions by outcome.",
			}, []string{"outcome"}),
		}
	})
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		for _, c := range []prometheus.Collector{theMetrics.grants, theMetrics.latency, theMetrics.jwksFetches, theMetrics.storeErrors, theMetrics.authRequests} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					ctx.Logger().Warn("registering a metric failed")
				}
			}
		}
	}
	return theMetrics
}

// Grant implements grant.Observer.
func (m *metrics) Grant(grantType, outcome, reason string, d time.Duration) {
	if grantType == "" {
		grantType = "none"
	}
	m.grants.WithLabelValues(grantType, outcome, reason).Inc()
	m.latency.WithLabelValues(grantType).Observe(d.Seconds())
}

// StoreError implements grant.Observer.
func (m *metrics) StoreError(op string) { m.storeErrors.WithLabelValues(op).Inc() }

// jwksObserver counts the fetches of one key source.
func (m *metrics) jwksObserver(kind, name string) func(ok bool) {
	okC := m.jwksFetches.WithLabelValues(kind, name, "ok")
	failC := m.jwksFetches.WithLabelValues(kind, name, "error")
	return func(ok bool) {
		if ok {
			okC.Inc()
		} else {
			failC.Inc()
		}
	}
}
