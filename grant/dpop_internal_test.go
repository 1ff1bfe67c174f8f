package grant

import (
	"encoding/json"
	"testing"
)

func TestCheckConfirmationBindsAnAssertionWithCnfToItsProofKey(t *testing.T) {
	withCnf := func(cnf string) *signedJWT {
		t := &signedJWT{claims: map[string]json.RawMessage{}}
		if cnf != "" {
			t.claims["cnf"] = json.RawMessage(cnf)
		}
		return t
	}
	proof := &dpopProof{jkt: "thumb"}
	cases := []struct {
		name  string
		cnf   string
		proof *dpopProof
		want  string // reason, "" for a pass
	}{
		{"no cnf needs no proof", "", nil, ""},
		{"cnf without jkt needs no proof", `{"x5t#S256":"a"}`, nil, ""},
		{"cnf.jkt without a proof", `{"jkt":"thumb"}`, nil, "cnf_without_proof"},
		{"cnf.jkt with a proof of another key", `{"jkt":"other"}`, proof, "cnf_key_mismatch"},
		{"cnf.jkt with a proof of its key", `{"jkt":"thumb"}`, proof, ""},
		{"a malformed cnf", `"thumb"`, proof, "bad_cnf"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			oerr := checkConfirmation(withCnf(tc.cnf), tc.proof)
			switch {
			case tc.want == "" && oerr != nil:
				t.Fatalf("refused: %v", oerr)
			case tc.want != "" && (oerr == nil || oerr.Reason != tc.want || oerr.Code != CodeInvalidGrant):
				t.Fatalf("got %v, want invalid_grant %s", oerr, tc.want)
			}
		})
	}
}
