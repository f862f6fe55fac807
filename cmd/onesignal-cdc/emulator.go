package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal/onesignaltest"
)

// emulator serves the OneSignal emulator until ctx ends.
func emulator(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, listen, err := emulatorFlags(args, stdout)
	if err != nil {
		return err
	}
	srv, err := onesignaltest.Start(cfg, listen)
	if err != nil {
		return usageError{err}
	}
	fmt.Fprintf(stdout, "OneSignal emulator for app %s at %s (state: %s/emulator/state, stats: %s/emulator/stats)\n", cfg.AppID, srv.URL(), srv.URL(), srv.URL())
	<-ctx.Done()
	return srv.Close()
}

// emulatorFlags reads the emulator's flags: its configuration and the
// address to serve on. Without flags it serves what
// docs/examples/quickstart.yaml expects (a test keeps the two in step).
func emulatorFlags(args []string, stdout io.Writer) (onesignaltest.Config, string, error) {
	fs := flag.NewFlagSet("onesignal-cdc emulator", flag.ContinueOnError)
	fs.SetOutput(stdout)
	listen := fs.String("listen", "127.0.0.1:8089", "address to serve on")
	appID := fs.String("app-id", "00000000-0000-4000-8000-000000000000", "the app ID the emulator accepts")
	apiKey := fs.String("api-key", envOr("ONESIGNAL_CDC_ONESIGNAL_API_KEY", "emulator-key"), "the API key the emulator accepts ($ONESIGNAL_CDC_ONESIGNAL_API_KEY)")
	tagLimit := fs.Int("tag-limit", 100, "most data tags one user may hold; 0 for no cap")
	verify := fs.Bool("identity-verification", false, "check the player model's identity verification hashes (HMAC-SHA256 of the value keyed with the API key, hex)")
	player404 := fs.Bool("unknown-player-404", false, `answer PUT /players/{id} of an unknown id with 404, as the docs say, instead of 400 "No user with this id found"`)
	var f onesignaltest.Faults
	var limits onesignaltest.RateLimits
	fs.BoolVar(&limits.Enabled, "rate-limits", false, "enforce OneSignal's write limits, answering 429 with Retry-After")
	fs.IntVar(&limits.AppPerSecond, "rate-app", 0, "writes per second for the app with -rate-limits; 0 for OneSignal's 1000")
	fs.IntVar(&limits.TargetPerSecond, "rate-target", 0, "writes per second to one user or device with -rate-limits; 0 for OneSignal's 1")
	fs.Func("fault-status", `answer a share of requests with an error status, unapplied, e.g. "500=0.1,503=0.05,429=0.05"`, func(v string) error {
		var err error
		f.Status, err = parseShares(v)
		return err
	})
	fs.IntVar(&f.RetryAfter, "fault-retry-after", 1, "Retry-After seconds on injected 429s")
	fs.DurationVar(&f.Latency, "fault-latency", 0, "delay every request by this long")
	fs.DurationVar(&f.LatencyMax, "fault-latency-max", 0, "with -fault-latency, delay by a random time up to this long")
	fs.Float64Var(&f.Reset, "fault-reset", 0, "share of requests whose connection is reset before they are applied")
	fs.Float64Var(&f.Drop, "fault-drop", 0, "share of requests applied and then reset instead of answered")
	fs.Int64Var(&f.Seed, "seed", 0, "seed of the fault draws: the same requests meet the same faults")
	if err := fs.Parse(args); err != nil {
		return onesignaltest.Config{}, "", usageError{err}
	}
	cfg := onesignaltest.Config{
		AppID: *appID, APIKey: *apiKey, TagLimit: *tagLimit, UnknownPlayer404: *player404, IdentityVerification: *verify,
		RateLimits: limits, Faults: f,
	}
	return cfg, *listen, nil
}

// parseShares reads "500=0.1,503=0.05" into status → share.
func parseShares(v string) (map[int]float64, error) {
	shares := map[int]float64{}
	for item := range strings.SplitSeq(v, ",") {
		code, share, ok := strings.Cut(strings.TrimSpace(item), "=")
		c, err1 := strconv.Atoi(code)
		p, err2 := strconv.ParseFloat(share, 64)
		if !ok || err1 != nil || err2 != nil {
			return nil, errors.New(`want status=share pairs separated by commas, e.g. "500=0.1,429=0.05"`)
		}
		shares[c] = p
	}
	return shares, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
