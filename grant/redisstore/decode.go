package redisstore

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
)

// decodeAccess decodes an access record read from Redis. Records are
// JSON (SPEC §4) and json.Unmarshal is what defines their reading; the
// records the gateway writes itself — compact JSON of known members whose
// strings need no unescaping — are read by compactAccess instead, which
// takes the strings out of the reply without copying them and allocates
// about five times where json.Unmarshal allocates about twenty. Anything
// else, a record written by hand or a member this version does not know,
// goes to json.Unmarshal, so that which records are accepted and what
// they read as does not change (FuzzDecodeAccess compares the two).
func decodeAccess(s string) (*grant.AccessRecord, error) {
	if rec, ok := compactAccess(s); ok {
		return rec, nil
	}
	rec := new(grant.AccessRecord)
	if err := json.Unmarshal([]byte(s), rec); err != nil {
		return nil, fmt.Errorf("redisstore: malformed access record: %w", err)
	}
	return rec, nil
}

// The members of an access record, one bit each, so that a member seen
// twice sends the record to json.Unmarshal.
const (
	mV = 1 << iota
	mSub
	mClientID
	mScope
	mAud
	mIss
	mAssertionIss
	mIat
	mExp
	mTenant
	mClaims
	mCnf
	mResource
	mProfile
	mJTI
	mChain
)

// compactAccess reads s as json.Unmarshal would into a new AccessRecord,
// or reports false for a text it leaves to json.Unmarshal: whitespace
// outside strings, a string member with an escape, a control character
// or invalid UTF-8, a member it does not know or that appears twice, a
// value of another type than the member's, a number that is not a plain
// integer in range, or anything after the object. Copied claims may hold
// any JSON value; each is checked with json.Valid and kept as its text,
// as json.RawMessage would.
func compactAccess(s string) (*grant.AccessRecord, bool) {
	p := parser{s: s}
	if !p.eat('{') {
		return nil, false
	}
	rec := new(grant.AccessRecord)
	var seen int
	for first := true; !p.eat('}'); first = false {
		if !first && !p.eat(',') {
			return nil, false
		}
		key, ok := p.str()
		if !ok || !p.eat(':') {
			return nil, false
		}
		bit := memberBit(key)
		if bit == 0 || seen&bit != 0 {
			return nil, false
		}
		seen |= bit
		if p.null() {
			// json.Unmarshal leaves a member that is null at its zero
			// value, and rec is new.
			continue
		}
		switch bit {
		case mV:
			n, ok := p.int()
			if !ok || int64(int(n)) != n {
				return nil, false
			}
			rec.V = int(n)
		case mIat:
			rec.Iat, ok = p.int()
		case mExp:
			rec.Exp, ok = p.int()
		case mSub:
			rec.Sub, ok = p.str()
		case mClientID:
			rec.ClientID, ok = p.str()
		case mScope:
			rec.Scope, ok = p.str()
		case mIss:
			rec.Iss, ok = p.str()
		case mAssertionIss:
			rec.AssertionIss, ok = p.str()
		case mTenant:
			rec.Tenant, ok = p.str()
		case mProfile:
			rec.Profile, ok = p.str()
		case mJTI:
			rec.JTI, ok = p.str()
		case mChain:
			rec.Chain, ok = p.str()
		case mAud:
			rec.Aud, ok = p.strs()
		case mResource:
			rec.Resource, ok = p.strs()
		case mClaims:
			rec.Claims, ok = p.claims()
		case mCnf:
			rec.Cnf, ok = p.cnf()
		}
		if !ok {
			return nil, false
		}
	}
	return rec, p.i == len(s)
}

func memberBit(key string) int {
	switch key {
	case "v":
		return mV
	case "sub":
		return mSub
	case "client_id":
		return mClientID
	case "scope":
		return mScope
	case "aud":
		return mAud
	case "iss":
		return mIss
	case "assertion_iss":
		return mAssertionIss
	case "iat":
		return mIat
	case "exp":
		return mExp
	case "tenant":
		return mTenant
	case "claims":
		return mClaims
	case "cnf":
		return mCnf
	case "resource":
		return mResource
	case "profile":
		return mProfile
	case "jti":
		return mJTI
	case "chain":
		return mChain
	}
	return 0
}

// parser reads compact JSON from s at i.
type parser struct {
	s string
	i int
	// raw is s as bytes, made on the first claim, so that every claim's
	// json.RawMessage is a slice of one copy.
	raw []byte
}

func (p *parser) eat(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *parser) null() bool {
	if len(p.s)-p.i >= 4 && p.s[p.i:p.i+4] == "null" {
		p.i += 4
		return true
	}
	return false
}

// str reads a string that needs no unescaping: no backslash, no control
// character, valid UTF-8, so that its text is its value.
func (p *parser) str() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	start, ascii := p.i, true
	for ; p.i < len(p.s); p.i++ {
		switch c := p.s[p.i]; {
		case c == '"':
			v := p.s[start:p.i]
			p.i++
			return v, ascii || utf8.ValidString(v)
		case c == '\\' || c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", false
}

// int reads an integer as JSON writes it: an optional minus sign, then 0
// or digits without a leading zero, within int64.
func (p *parser) int() (int64, bool) {
	start := p.i
	p.eat('-')
	digits := p.i
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	if p.i == digits || (p.s[digits] == '0' && p.i > digits+1) {
		return 0, false
	}
	n, err := strconv.ParseInt(p.s[start:p.i], 10, 64)
	return n, err == nil
}

// strs reads an array of strings; [] is an empty slice, not nil, as
// json.Unmarshal makes it.
func (p *parser) strs() ([]string, bool) {
	if !p.eat('[') {
		return nil, false
	}
	if p.eat(']') {
		return []string{}, true
	}
	var v []string
	for {
		e, ok := p.str()
		if !ok {
			return nil, false
		}
		v = append(v, e)
		if p.eat(']') {
			return v, true
		}
		if !p.eat(',') {
			return nil, false
		}
	}
}

// claims reads an object of any JSON values, each kept as its text.
func (p *parser) claims() (map[string]json.RawMessage, bool) {
	if !p.eat('{') {
		return nil, false
	}
	m := map[string]json.RawMessage{}
	for first := true; !p.eat('}'); first = false {
		if !first && !p.eat(',') {
			return nil, false
		}
		key, ok := p.str()
		if !ok || !p.eat(':') {
			return nil, false
		}
		start := p.i
		if !p.skipValue() {
			return nil, false
		}
		if p.raw == nil {
			p.raw = []byte(p.s)
		}
		// The full slice expression keeps an append to one claim from
		// writing over the next.
		v := p.raw[start:p.i:p.i]
		// json.Valid allows whitespace around the value, which
		// json.RawMessage would not keep.
		if !json.Valid(v) || isSpace(v[0]) || isSpace(v[len(v)-1]) {
			return nil, false
		}
		m[key] = v
	}
	return m, true
}

// skipValue moves past one value, to the ',' or '}' after it; json.Valid
// then checks what it skipped.
func (p *parser) skipValue() bool {
	depth := 0
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case '"':
			p.i++
			for p.i < len(p.s) && p.s[p.i] != '"' {
				if p.s[p.i] == '\\' {
					p.i++
				}
				p.i++
			}
			if p.i >= len(p.s) {
				return false
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return true
			}
			depth--
		case ',':
			if depth == 0 {
				return true
			}
		}
		p.i++
	}
	return false
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// cnf reads {} or {"jkt":"…"}.
func (p *parser) cnf() (*grant.Confirmation, bool) {
	if !p.eat('{') {
		return nil, false
	}
	c := new(grant.Confirmation)
	if p.eat('}') {
		return c, true
	}
	key, ok := p.str()
	if !ok || key != "jkt" || !p.eat(':') {
		return nil, false
	}
	if !p.null() {
		if c.JKT, ok = p.str(); !ok {
			return nil, false
		}
	}
	return c, p.eat('}')
}
