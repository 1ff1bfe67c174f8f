package grant

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
)

func formRequest(body io.Reader, contentType string, contentLength int64) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/oauth2/token", body)
	r.Header.Set("Content-Type", contentType)
	r.ContentLength = contentLength
	return r
}

// readForm's answers: the media type in any spelling ParseMediaType
// accepts, the 64 KiB limit whether or not the length is declared, and
// read and encoding failures.
func TestReadFormAnswers(t *testing.T) {
	const ct = "application/x-www-form-urlencoded"
	atLimit := "a=" + strings.Repeat("b", maxFormSize-2)
	for _, tc := range []struct {
		name, contentType string
		body              io.Reader
		length            int64
		reason            string // "" for success
	}{
		{"plain", ct, strings.NewReader("a=1&b=2"), -1, ""},
		{"parameters and capitals", "Application/X-WWW-Form-URLEncoded; charset=UTF-8", strings.NewReader("a=1"), -1, ""},
		{"other media type", "application/json", strings.NewReader("a=1"), -1, "bad_content_type"},
		{"malformed media type", ct + "; charset", strings.NewReader("a=1"), -1, "bad_content_type"},
		{"no content type", "", strings.NewReader("a=1"), -1, "bad_content_type"},
		{"exactly the limit", ct, strings.NewReader(atLimit), -1, ""},
		{"one byte over, undeclared", ct, strings.NewReader(atLimit + "c"), -1, "too_large"},
		{"over, declared", ct, strings.NewReader("a=1"), maxFormSize + 1, "too_large"},
		{"over, in one-byte reads", ct, iotest.OneByteReader(strings.NewReader(atLimit + "c")), -1, "too_large"},
		{"read error", ct, iotest.ErrReader(errors.New("reset")), -1, "bad_body"},
		{"read error after data", ct, io.MultiReader(strings.NewReader("a=1"), iotest.ErrReader(errors.New("reset"))), -1, "bad_body"},
		{"bad encoding", ct, strings.NewReader("a=%zz"), -1, "bad_body"},
		{"repeated", ct, strings.NewReader("a=1&a=2"), -1, "repeated_parameter"},
		{"repeated resource", ct, strings.NewReader("resource=x&resource=y"), -1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form, oerr := readForm(formRequest(tc.body, tc.contentType, tc.length))
			switch {
			case tc.reason == "" && oerr != nil:
				t.Fatalf("refused: %v", oerr.Reason)
			case tc.reason != "" && (oerr == nil || oerr.Reason != tc.reason):
				t.Fatalf("got %v, want %s", oerr, tc.reason)
			case tc.reason == "too_large" && oerr.Status != http.StatusRequestEntityTooLarge:
				t.Fatalf("status %d", oerr.Status)
			case tc.name == "exactly the limit" && len(form.Get("a")) != maxFormSize-2:
				t.Fatalf("read %d bytes of the value", len(form.Get("a")))
			}
		})
	}
}

// Bodies share pooled buffers: each request's form holds its own body
// only, and a form outlives the next request's read unchanged.
func TestReadFormBodiesDoNotShareBytes(t *testing.T) {
	const ct = "application/x-www-form-urlencoded"
	long := strings.Repeat("x", 5000)
	var forms []map[string][]string
	bodies := []string{"secret=" + long, "a=1", "secret=" + long[:3000] + "&b=2", "c=3"}
	for range 3 {
		for _, b := range bodies {
			form, oerr := readForm(formRequest(strings.NewReader(b), ct, -1))
			if oerr != nil {
				t.Fatal(oerr.Reason)
			}
			forms = append(forms, form)
		}
	}
	for i, form := range forms {
		want := map[string][]string{
			"secret=" + long:                 {"secret", long},
			"a=1":                            {"a", "1"},
			"secret=" + long[:3000] + "&b=2": {"secret", long[:3000], "b", "2"},
			"c=3":                            {"c", "3"},
		}[bodies[i%len(bodies)]]
		if len(form) != len(want)/2 {
			t.Fatalf("form %d has %d parameters: %v", i, len(form), form)
		}
		for j := 0; j < len(want); j += 2 {
			if got := form[want[j]]; len(got) != 1 || got[0] != want[j+1] {
				t.Fatalf("form %d: %s is %.20q", i, want[j], got)
			}
		}
	}
}
