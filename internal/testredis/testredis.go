// Package testredis runs real redis-server processes for tests. The stores
// are tested against the server they will meet in production, never against
// a mock, so that TTL, Lua and cluster semantics are Redis's own.
package testredis

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a server may take to answer PING; a healthy
// redis-server starts in milliseconds, so hitting it means something is wrong.
const startTimeout = 10 * time.Second

// Server is one redis-server process listening on 127.0.0.1.
type Server struct {
	tb     testing.TB
	binary string
	dir    string
	port   int
	tls    bool     // the port speaks TLS with a self-signed certificate
	extra  []string // arguments beyond the common ones, kept for Restart

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	out  *lockedBuffer
}

// Start starts a standalone redis-server on a free loopback port and stops
// it when the test ends. Without redis-server on PATH the test is skipped,
// except in CI (CI=true) where a missing dependency must fail loudly.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return start(tb, nil, nil, false)
}

// StartWith is Start with more redis-server arguments, such as
// "--maxmemory-policy", "allkeys-lru".
func StartWith(tb testing.TB, args ...string) *Server {
	tb.Helper()
	return start(tb, func(string, int) []string { return args }, nil, false)
}

// StartTLS starts a standalone redis-server that accepts only TLS, with a
// self-signed certificate for 127.0.0.1 that clients must either skip
// verifying or fail on. Client certificates are not asked for.
func StartTLS(tb testing.TB) *Server {
	tb.Helper()
	return start(tb, nil, nil, true)
}

// StartCluster starts n redis-server nodes in cluster mode, splits the 16384
// hash slots evenly among them as masters and waits until every node reports
// the cluster healthy.
func StartCluster(tb testing.TB, n int) []*Server {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("testredis: cluster needs at least one node, got %d", n)
	}
	nodes := make([]*Server, n)
	for i := range nodes {
		nodes[i] = start(tb, func(dir string, port int) []string {
			return []string{
				"--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(dir, "nodes-"+strconv.Itoa(port)+".conf"),
				"--cluster-node-timeout", "5000",
			}
		}, nil, false)
	}
	const slots = 16384
	for i, s := range nodes {
		lo, hi := i*slots/n, (i+1)*slots/n-1
		if _, err := s.Do("CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi)); err != nil {
			tb.Fatalf("testredis: assigning slots to %s: %v", s.Addr(), err)
		}
	}
	// Meeting every pair spares the nodes a round of gossip to learn of
	// each other, which is most of the start-up time.
	for i, a := range nodes {
		for _, b := range nodes[i+1:] {
			if _, err := a.Do("CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(b.port)); err != nil {
				tb.Fatalf("testredis: cluster meet from %s: %v", a.Addr(), err)
			}
		}
	}
	deadline := time.Now().Add(startTimeout)
	for _, s := range nodes {
		for {
			info, err := s.Do("CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_slots_ok:16384") &&
				strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(n)+"\r\n") {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("testredis: cluster did not converge at %s: %v\n%s", s.Addr(), err, info)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nodes
}

// StartReplica starts a redis-server that replicates master (replicaof)
// and waits until its link to the master is up and the initial sync is
// done, so that a write to master reaches it from then on.
func StartReplica(tb testing.TB, master *Server) *Server {
	tb.Helper()
	// The master otherwise waits five seconds for more replicas before
	// the initial sync.
	if _, err := master.Do("CONFIG", "SET", "repl-diskless-sync-delay", "0"); err != nil {
		tb.Fatalf("testredis: configuring master %s: %v", master.Addr(), err)
	}
	r := start(tb, func(string, int) []string {
		return []string{"--replicaof", "127.0.0.1", strconv.Itoa(master.port)}
	}, nil, false)
	deadline := time.Now().Add(startTimeout)
	for {
		info, err := r.Do("INFO", "replication")
		if err == nil && strings.Contains(info, "master_link_status:up") &&
			!strings.Contains(info, "master_sync_in_progress:1") {
			return r
		}
		if time.Now().After(deadline) {
			tb.Fatalf("testredis: replica %s did not sync with %s: %v\n%s", r.Addr(), master.Addr(), err, info)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// StartSentinel starts a redis-server in sentinel mode that monitors master
// under masterName, with a quorum of one.
func StartSentinel(tb testing.TB, master *Server, masterName string) *Server {
	tb.Helper()
	return start(tb, nil, func(dir string, port int) (string, error) {
		conf := filepath.Join(dir, "sentinel-"+strconv.Itoa(port)+".conf")
		body := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1\n", masterName, master.port)
		return conf, os.WriteFile(conf, []byte(body), 0o600)
	}, false)
}

// start finds the binary, then tries a few free ports: another test process
// may take a port between our probe and redis-server's bind.
func start(tb testing.TB, extraArgs func(dir string, port int) []string, config func(dir string, port int) (string, error), withTLS bool) *Server {
	tb.Helper()
	binary, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("testredis: redis-server not found on PATH (required in CI): %v", err)
		}
		tb.Skipf("testredis: redis-server not found on PATH, skipping (install redis-server 7 to run this test): %v", err)
	}
	dir := tb.TempDir()
	var tlsArgs []string
	if withTLS {
		cert, key, err := writeCertificate(dir)
		if err != nil {
			tb.Fatalf("testredis: making a certificate: %v", err)
		}
		tlsArgs = []string{"--tls-cert-file", cert, "--tls-key-file", key, "--tls-auth-clients", "no"}
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			tb.Fatalf("testredis: finding a free port: %v", err)
		}
		s := &Server{tb: tb, binary: binary, dir: dir, port: port, tls: withTLS}
		if config != nil {
			conf, err := config(dir, port)
			if err != nil {
				tb.Fatalf("testredis: writing config: %v", err)
			}
			// A config file must come first; --sentinel switches the mode.
			s.extra = append(s.extra, conf, "--sentinel")
		}
		if extraArgs != nil {
			s.extra = append(s.extra, extraArgs(dir, port)...)
		}
		s.extra = append(s.extra, tlsArgs...)
		if lastErr = s.launch(); lastErr == nil {
			tb.Cleanup(s.Stop)
			return s
		}
	}
	tb.Fatalf("testredis: could not start redis-server: %v", lastErr)
	return nil
}

// freePort asks the kernel for a free port; closing the listener releases it
// for redis-server. It never returns 6379, so a developer's own Redis is safe.
func freePort() (int, error) {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port != 6379 {
			return port, nil
		}
	}
}

// launch starts the process and waits until it answers PING, or reports why
// it did not.
func (s *Server) launch() error {
	args := append([]string(nil), s.extra...)
	port := []string{"--port", strconv.Itoa(s.port)}
	if s.tls {
		port = []string{"--port", "0", "--tls-port", strconv.Itoa(s.port)}
	}
	args = append(args, port...)
	args = append(args,
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
	)
	cmd := exec.Command(s.binary, args...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done, s.out = cmd, done, out
	s.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited: %s", s.port, out.String())
		default:
		}
		reply, err := s.Do("PING")
		if err == nil && reply == "PONG" {
			return nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("redis-server on port %d did not answer PING within %v: %v; output: %s", s.port, startTimeout, err, out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is a redis:// URL (rediss:// for TLS) of database 0 on the server.
func (s *Server) URL() string {
	if s.tls {
		return "rediss://" + s.Addr() + "/0"
	}
	return "redis://" + s.Addr() + "/0"
}

// Do sends one command over a fresh connection and returns its reply as a
// string: simple, bulk and integer replies as they are, arrays joined with
// newlines, nil as "". It is meant for set-up and for looking at what code
// under test wrote, without a client library that code also uses.
func (s *Server) Do(args ...string) (string, error) { return command(s.Addr(), s.tls, args...) }

// CommandCalls reads INFO commandstats: how often each command ran since
// the server started or the last CONFIG RESETSTAT. The commands that ask
// (INFO, CONFIG) are left out, so that what remains is the traffic of the
// code under test alone.
func (s *Server) CommandCalls(tb testing.TB) map[string]int {
	tb.Helper()
	info, err := s.Do("INFO", "commandstats")
	if err != nil {
		tb.Fatalf("INFO commandstats: %v", err)
	}
	calls := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		// cmdstat_get:calls=3,usec=12,usec_per_call=4.00,...
		name, stats, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "cmdstat_"), ":")
		if !ok || name == "info" || strings.HasPrefix(name, "config|") {
			continue
		}
		first, _, _ := strings.Cut(stats, ",")
		n, err := strconv.Atoi(strings.TrimPrefix(first, "calls="))
		if err != nil {
			tb.Fatalf("unexpected commandstats line %q", sc.Text())
		}
		calls[name] = n
	}
	return calls
}

// Stop kills the server, as a crash would, and waits for it to exit. Stopping
// a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart starts the server again on the same port, so that clients holding
// its address reconnect to it. Its data is gone: persistence is off.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	if err := s.launch(); err != nil {
		s.tb.Fatalf("testredis: restart: %v", err)
	}
}

// Pause freezes the server (SIGSTOP): connections stay open and the kernel
// still accepts new ones, but nothing is answered, which is how a hung or
// partitioned server looks to a client, unlike a refused connection.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume undoes Pause.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) {
	s.tb.Helper()
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		s.tb.Fatalf("testredis: server on port %d is not running", s.port)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		s.tb.Fatalf("testredis: signalling server: %v", err)
	}
}

// command is Do for an address.
func command(addr string, withTLS bool, args ...string) (string, error) {
	d := &net.Dialer{Timeout: time.Second}
	var conn net.Conn
	var err error
	if withTLS {
		// The certificate is our own throw-away one.
		conn, err = tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write(b.Bytes()); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(conn))
}

// readReply reads one RESP2 reply; an array's elements are joined with
// newlines, a nil reply is "".
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$', '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", fmt.Errorf("unexpected reply %q", line)
		}
		if n < 0 {
			return "", nil
		}
		if line[0] == '$' {
			buf := make([]byte, n+2)
			if _, err := io.ReadFull(r, buf); err != nil {
				return "", err
			}
			return string(buf[:n]), nil
		}
		elems := make([]string, n)
		for i := range elems {
			if elems[i], err = readReply(r); err != nil {
				return "", err
			}
		}
		return strings.Join(elems, "\n"), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

// writeCertificate writes a self-signed certificate for 127.0.0.1 and its
// key into dir.
func writeCertificate(dir string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "testredis"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "redis.crt"), filepath.Join(dir, "redis.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// lockedBuffer collects a server's output, written by the exec package's
// copying goroutine and read by the test on failure.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
