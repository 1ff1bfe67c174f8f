package grant_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/clientauth"
)

// bcryptComparer checks bcrypt hashes as caddyauth.BcryptHash does; the
// core's tests cannot import Caddy.
type bcryptComparer struct{}

func (bcryptComparer) Compare(hashed, plaintext []byte) (bool, error) {
	err := bcrypt.CompareHashAndPassword(hashed, plaintext)
	if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		return false, nil
	}
	return err == nil, err
}

// secretHash hashes a test secret at the lowest cost, so that no test
// depends on machine speed.
func secretHash(t testing.TB, secret string) *clientauth.Hash {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return &clientauth.Hash{Value: h, Comparer: bcryptComparer{}}
}

// standIn has the algorithm and cost of every test client's hash.
var standIn = sync.OnceValue(func() clientauth.Hash {
	h, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return clientauth.Hash{Value: h, Comparer: bcryptComparer{}}
})

func testSecrets() *clientauth.Secrets {
	return clientauth.New(clientauth.Config{StandIn: standIn()})
}

// blockingComparer holds every comparison until release is closed.
type blockingComparer struct{ release chan struct{} }

func (b blockingComparer) Compare(hashed, plaintext []byte) (bool, error) {
	<-b.release
	return bcryptComparer{}.Compare(hashed, plaintext)
}

func TestUnknownClientAndWrongSecretGetTheSameAnswer(t *testing.T) {
	b := newServer(t, nil)
	assertion := b.assertion(t, "https://idp", nil)
	answer := func(id, secret string) (int, string, string) {
		form := url.Values{"grant_type": {grant.GrantTypeJWTBearer}, "assertion": {assertion}}
		w, body := b.post(form, func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret)) })
		desc, _ := body["error_description"].(string)
		return w.Code, w.Header().Get("WWW-Authenticate"), desc
	}
	wantCode, wantChallenge, wantDesc := answer("c:1", "wrong")
	if wantCode != http.StatusUnauthorized || wantChallenge == "" {
		t.Fatalf("wrong secret: %d %q, want 401 with a Basic challenge", wantCode, wantChallenge)
	}
	for _, tc := range []struct{ name, id, secret string }{
		{"unknown client", "nobody", "wrong"},
		{"unknown client with the known client's secret", "nobody", b.secret},
		{"empty secret", "c:1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, challenge, desc := answer(tc.id, tc.secret)
			if code != wantCode || challenge != wantChallenge || desc != wantDesc {
				t.Fatalf("got %d %q %q, want %d %q %q", code, challenge, desc, wantCode, wantChallenge, wantDesc)
			}
		})
	}
}

func TestBusySecretComparisonIsTemporarilyUnavailable(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	b := newServer(t, func(cfg *grant.Config) {
		h := cfg.Tenants[""].Clients["c:1"].SecretHash
		cfg.Tenants[""].Clients["c:1"].SecretHash = &clientauth.Hash{Value: h.Value, Comparer: blockingComparer{release}}
	})
	form := url.Values{"grant_type": {grant.GrantTypeJWTBearer}, "assertion": {b.assertion(t, "https://idp", nil)}}
	// A request whose context has already ended never gets its turn.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w, body := b.post(form, func(r *http.Request) {
		*r = *r.WithContext(ctx)
		r.SetBasicAuth(url.QueryEscape("c:1"), url.QueryEscape(b.secret))
	})
	if w.Code != http.StatusServiceUnavailable || body["error"] != grant.CodeTemporarilyUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("got %d %v Retry-After %q; want 503 temporarily_unavailable with Retry-After", w.Code, body, w.Header().Get("Retry-After"))
	}
}
