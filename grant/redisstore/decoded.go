package redisstore

import (
	"encoding/json"
	"sync"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
)

// decodedMax bounds the access records decoded is holding: about 1 KB
// each (the record's bytes as the key, and the record), so 4 MB at most.
const decodedMax = 4096

// decoded remembers access records decoded from Redis, keyed by the
// record's bytes exactly as Redis returned them. An access token is
// verified many times over its life, and decoding its record is the
// larger part of a verification's CPU once the read itself is cheap (a
// pipelined read, or a hit in go-redis's client-side cache).
//
// It is a memo of a pure function, not a cache of Redis: every
// verification still reads the record, and only the decoding of bytes
// already seen is skipped. A record that changed in Redis has other bytes
// and is decoded afresh; a deleted one is not found before this is
// consulted. So a revocation takes effect exactly as without it.
//
// The records it hands out are shared: callers must not modify them
// (grant.Store.Access says so). When full, one entry in no particular
// order (Go's map iteration) makes room, so a working set larger than
// decodedMax costs a decoding per read, as without it.
type decoded struct {
	mu sync.Mutex
	m  map[string]*grant.AccessRecord
}

// access returns the record v encodes.
func (d *decoded) access(v string) (*grant.AccessRecord, error) {
	d.mu.Lock()
	rec, ok := d.m[v]
	d.mu.Unlock()
	if ok {
		return rec, nil
	}
	rec = new(grant.AccessRecord)
	if err := json.Unmarshal([]byte(v), rec); err != nil {
		return nil, err
	}
	d.mu.Lock()
	if d.m == nil {
		d.m = make(map[string]*grant.AccessRecord)
	}
	if len(d.m) >= decodedMax {
		for k := range d.m {
			delete(d.m, k)
			break
		}
	}
	d.m[v] = rec
	d.mu.Unlock()
	return rec, nil
}
