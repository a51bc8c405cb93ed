package daemon

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lebowski-dist/lebowski/cmd/internal/builds"
)

// metrics are exported on an opt-in address (metrics_addr), never by
// default; a non-loopback address must be configured explicitly.
type metrics struct {
	reg          *prometheus.Registry
	claims       *prometheus.CounterVec
	builds       *prometheus.CounterVec
	buildSeconds prometheus.Histogram
	queue        prometheus.Gauge
	backoffs     prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "lebowski", Name: "peer_claims_total",
			Help: "Verified claims received from peers, by result."}, []string{"result"}),
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "lebowski", Name: "builds_total",
			Help: "Rebuilds run by this node, by outcome."}, []string{"status"}),
		buildSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "lebowski", Name: "build_seconds",
			Help: "Wall time of rebuilds.", Buckets: prometheus.ExponentialBuckets(5, 2, 10)}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "lebowski", Name: "build_queue",
			Help: "Rebuilds waiting in the queue."}),
		backoffs: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "lebowski", Name: "build_backoffs_total",
			Help: "Rebuilds announced and then left to builders whose intents or claims came first (shared work)."}),
	}
	m.reg.MustRegister(m.claims, m.builds, m.buildSeconds, m.queue, m.backoffs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) listen(addr string, d *Daemon) (*http.Server, net.Listener, error) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "lebowski", Name: "peers", Help: "Connected peers."},
		func() float64 { return float64(len(d.net.Peers())) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "lebowski", Name: "stored_claims", Help: "Claims in the store."},
		func() float64 {
			s, err := d.st.Stats()
			if err != nil {
				return 0
			}
			return float64(s.Claims)
		}))
	m.reg.MustRegister(refusalCollector{d})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics: listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return newHTTPServer(mux, 30*time.Second, 30*time.Second), limitListener(ln), nil
}

var (
	refusedDesc = prometheus.NewDesc("lebowski_refused_total",
		"Work refused to bound what peers can make the node do, by kind (docs/SECURITY.md): gossip_rate, sync_rate, "+
			"sync_busy, sync_evicted, sync_budget, sync_invalid, sync_fault, blob_rate, blob_busy, blob_invalid, blob_fault, blob_evicted, "+
			"penalized, keys_rate, intents_rate, intents_signer_rate, intents_replay, gossip_queue, store_budget, http_evicted, http_busy.",
		[]string{"kind"}, nil)
	ingestedDesc = prometheus.NewDesc("lebowski_ingested_total",
		"Claims handed to the store since start, by outcome (new, duplicate, equivocation, rejected, over_budget).",
		[]string{"status"}, nil)
)

// refusalCollector reads the network's and the store's counters at
// scrape time.
type refusalCollector struct{ d *Daemon }

func (c refusalCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- refusedDesc
	ch <- ingestedDesc
}

func (c refusalCollector) Collect(ch chan<- prometheus.Metric) {
	if c.d.net != nil {
		for kind, v := range c.d.net.Refusals() {
			ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(v), kind)
		}
	}
	for kind, v := range httpRefusals() {
		ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(v), kind)
	}
	counts := c.d.st.IngestCounts()
	ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(counts["over_budget"]), "store_budget")
	for status, v := range counts {
		ch <- prometheus.MustNewConstMetric(ingestedDesc, prometheus.CounterValue, float64(v), status)
	}
}

// The build service's Metrics.
var _ builds.Metrics = (*metrics)(nil)

func (m *metrics) Build(status string)          { m.builds.WithLabelValues(status).Inc() }
func (m *metrics) BuildTime(took time.Duration) { m.buildSeconds.Observe(took.Seconds()) }
func (m *metrics) Queue(waiting int)            { m.queue.Set(float64(waiting)) }
func (m *metrics) Backoff()                     { m.backoffs.Inc() }
