// Package caddyjwtgrant is the root of the caddy-jwt-grant plugin: build a
// Caddy with it by `xcaddy build --with github.com/caddy-jwt-grant/caddy-jwt-grant`.
// Importing it registers the jwt_grant and jwt_grant_auth handlers, the
// store modules and the jwt-grant command.
package caddyjwtgrant

import (
	_ "github.com/caddy-jwt-grant/caddy-jwt-grant/caddymodule"
)
