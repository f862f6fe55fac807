package onesignal

import "time"

// SetAliasConflictWait shortens how long c waits for another user to let
// go of an alias.
func SetAliasConflictWait(c *Client, d time.Duration) { c.aliasWait = d }
