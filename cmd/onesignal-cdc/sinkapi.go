package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"

	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

// forModel returns the client of onesignal.model: users itself, or a
// player-model client for the same app, key and HTTP client.
func forModel(cfg *config.Config, users *onesignal.Client) interface {
	sink.OneSignal
	CheckCredentials(ctx context.Context) error
} {
	if cfg.OneSignal.Model == config.ModelPlayer {
		return users.Players(cfg.OneSignal.IdentityVerification)
	}
	return users
}

// parkedTagsTopic is where the player model keeps the tags that reached no
// device yet.
func parkedTagsTopic(cfg *config.Config) string { return cfg.Kafka.TopicPrefix + ".parked-tags" }

// sinkOneSignal returns what the sink writes with: the client of
// onesignal.model and, in the player model, the parked-tags store, which
// is also a component to run (nil in the user model).
func sinkOneSignal(ctx context.Context, cfg *config.Config, users *onesignal.Client, cluster broker.Cluster, log *zap.Logger) (sink.OneSignal, *sink.ParkedStore, error) {
	api := forModel(cfg, users)
	if cfg.OneSignal.Model != config.ModelPlayer {
		return api, nil, nil
	}
	parked, err := sink.OpenParkedStore(ctx, cluster, parkedTagsTopic(cfg), log)
	if err != nil {
		return nil, nil, err
	}
	return api, parked, nil
}

// parkedTags is the store as the sink takes it: nil, not a nil pointer,
// when there is none.
func parkedTags(p *sink.ParkedStore) sink.ParkedTags {
	if p == nil {
		return nil
	}
	return p
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
