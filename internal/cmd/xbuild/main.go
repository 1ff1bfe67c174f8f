// Command xbuild builds the custom Caddy described by xcaddy.json with the
// xcaddy pinned as a tool in go.mod. xcaddy.json is the one place that
// names the Caddy version and the plugins of the build.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// spec is xcaddy.json.
type spec struct {
	CaddyVersion string `json:"caddy_version"`
	Output       string `json:"output"`
	Plugins      []struct {
		Module  string `json:"module"`
		Version string `json:"version,omitempty"`
		// Replace is a local directory that stands in for the module.
		Replace string `json:"replace,omitempty"`
	} `json:"plugins"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "xbuild:", err)
		os.Exit(1)
	}
}

// localProxyChain is the GOPROXY for a build with a local replacement.
// xcaddy runs `go get` on the replaced module, which asks the proxy for its
// versions first; a proxy that answers anything but 404/410 for a module it
// does not have (some answer 403) stops a ","-separated chain. Chaining
// with "|" and ending in "off" lets that lookup fail softly, so the go
// command falls back to the local replacement, while every real module
// still comes from the configured proxies.
func localProxyChain() string {
	out, err := exec.Command("go", "env", "GOPROXY").Output()
	chain := strings.TrimSpace(string(out))
	if err != nil || chain == "" || chain == "off" {
		chain = "https://proxy.golang.org"
	}
	var kept []string
	for _, p := range strings.FieldsFunc(chain, func(r rune) bool { return r == ',' || r == '|' }) {
		if p != "direct" && p != "off" {
			kept = append(kept, p)
		}
	}
	return strings.Join(append(kept, "off"), "|")
}

func run() error {
	raw, err := os.ReadFile("xcaddy.json")
	if err != nil {
		return err
	}
	var s spec
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("xcaddy.json: %w", err)
	}
	if s.CaddyVersion == "" {
		return fmt.Errorf("xcaddy.json: caddy_version is required")
	}
	if s.Output == "" {
		s.Output = "caddy"
	}
	args := []string{"tool", "xcaddy", "build", s.CaddyVersion, "--output", s.Output}
	for _, p := range s.Plugins {
		with := p.Module
		switch {
		case p.Replace != "":
			abs, err := filepath.Abs(p.Replace)
			if err != nil {
				return err
			}
			with += "=" + abs
		case p.Version != "":
			with += "@" + p.Version
		}
		args = append(args, "--with", with)
	}
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "GOPROXY="+localProxyChain())
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	fmt.Println("go", args)
	return cmd.Run()
}
