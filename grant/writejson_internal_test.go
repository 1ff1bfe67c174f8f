package grant

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// writeJSON's body is json.Marshal's, byte for byte, with the no-store,
// type and length headers, however the pooled buffers were used before;
// and a later handler's append to one header leaves the others alone.
func TestWriteJSONAnswersWhatMarshalWould(t *testing.T) {
	values := []any{
		&tokenResponse{AccessToken: strings.Repeat("a", 5000), TokenType: "Bearer", ExpiresIn: 3600, Scope: "a <b> & c",
			Resource: []string{"https://r/\u2028"}},
		&tokenResponse{AccessToken: "short", TokenType: "DPoP", Resource: "https://r"},
		struct{}{},
		map[string]any{"active": false},
	}
	for range 2 {
		for _, v := range values {
			w := httptest.NewRecorder()
			writeJSON(w, http.StatusOK, v)
			want, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if got := w.Body.String(); got != string(want) {
				t.Fatalf("body %.60q, want %.60q", got, want)
			}
			h := w.Result().Header
			for k, want := range map[string]string{"Cache-Control": "no-store", "Pragma": "no-cache",
				"Content-Type": "application/json; charset=utf-8", "Content-Length": strconv.Itoa(len(want))} {
				if got := h[k]; !slices.Equal(got, []string{want}) {
					t.Fatalf("%s: %q, want %q", k, got, want)
				}
			}
		}
	}
	w := httptest.NewRecorder()
	writeJSON(w, http.StatusOK, struct{}{})
	w.Header().Add("Cache-Control", "private")
	if got := w.Header()["Pragma"]; !slices.Equal(got, []string{"no-cache"}) {
		t.Fatalf("Pragma after an append to Cache-Control: %q", got)
	}
	if got := w.Header()["Cache-Control"]; !slices.Equal(got, []string{"no-store", "private"}) {
		t.Fatalf("Cache-Control: %q", got)
	}
}

// A value that cannot be encoded is a 500 server_error.
func TestWriteJSONEncodingFailure(t *testing.T) {
	w := httptest.NewRecorder()
	writeJSON(w, http.StatusOK, map[string]any{"x": make(chan int)})
	var body errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != 500 || body.Error != CodeServerError {
		t.Fatalf("%d %q", w.Code, w.Body.String())
	}
	if got := w.Header().Get("Content-Length"); got != strconv.Itoa(w.Body.Len()) {
		t.Fatalf("Content-Length %s for %d bytes", got, w.Body.Len())
	}
}
