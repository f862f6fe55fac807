package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"

	"os"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/kv"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

// forModel returns the client of onesignal.model: users itself, or a
// player-model client for the same app, key and HTTP client.
func forModel(cfg *config.Config, users *onesignal.Client) interface {
	sink.OneSignal
	CheckCredentials(ctx context.Context) error
} {
	if cfg.OneSignal.Model == config.ModelPlayer {
		return users.Players(cfg.OneSignal.IdentityVerification, cfg.OneSignal.LegacyAPIKey)
	}
	return users
}

// driftConfig is continuous mode's configuration (sink.drift), its
// exports read by the sink's client; zero when it is off.
func driftConfig(cfg *config.Config, api *onesignal.Client) sink.DriftConfig {
	d := cfg.Sink.Drift
	if d.SweepPeriod <= 0 {
		return sink.DriftConfig{}
	}
	players := api.Players(cfg.OneSignal.IdentityVerification, cfg.OneSignal.LegacyAPIKey)
	return sink.DriftConfig{Period: d.SweepPeriod, Share: d.Share, Repair: d.Repair, RateLimit: cfg.OneSignal.RateLimit,
		Users: api.StartExport, Players: players.StartExport}
}

// sinkStore opens the sink's local cache in sink.state_dir, or in a new
// temporary directory; done closes it and removes the temporary
// directory.
func sinkStore(cfg *config.Config) (store kv.Store, done func(), err error) {
	dir, temp := cfg.Sink.StateDir, false
	if dir == "" {
		if dir, err = os.MkdirTemp("", "onesignal-cdc-sink-"); err != nil {
			return nil, nil, fmt.Errorf("sink.state_dir is empty and no temporary directory can be made: %w: set sink.state_dir", err)
		}
		temp = true
	}
	store, err = kv.OpenDisk(dir, kv.Options{})
	if err != nil {
		if temp {
			os.RemoveAll(dir)
		}
		return nil, nil, err
	}
	return store, func() {
		store.Close()
		if temp {
			os.RemoveAll(dir)
		}
	}, nil
}

// oneSignalHTTP is the HTTP client of the OneSignal API: the system's
// roots plus onesignal.ca_file, each request passed through wrap when it
// is not nil (the ops server's counting transport).
func oneSignalHTTP(cfg *config.Config, wrap func(http.RoundTripper) http.RoundTripper) (*http.Client, error) {
	base := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.OneSignal.CAFile != "" {
		pool, err := broker.LoadCA(cfg.OneSignal.CAFile)
		if err != nil {
			return nil, fmt.Errorf("onesignal.ca_file: %w", err)
		}
		base.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	var rt http.RoundTripper = base
	if wrap != nil {
		rt = wrap(base)
	}
	return &http.Client{Timeout: onesignal.DefaultTimeout, Transport: rt}, nil
}
