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

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

// emulator serves the OneSignal emulator until ctx ends.
func serveEmulator(ctx context.Context, cmd *command, args []string, stdout io.Writer) error {
	cfg, listen, err := emulatorFlags(cmd, args, stdout)
	if err != nil {
		return err
	}
	srv, err := emulator.Start(cfg, listen)
	if _, ok := errors.AsType[*emulator.ListenError](err); ok {
		return usageError{fmt.Errorf("%w: choose another address with --listen, such as --listen 127.0.0.1:0 for any free port", err)}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "OneSignal emulator for app %s at %s (state: %s/emulator/state, stats: %s/emulator/stats)\n", cfg.AppID, srv.URL(), srv.URL(), srv.URL())
	<-ctx.Done()
	return srv.Close()
}

// emulatorFlags reads the emulator's flags: its configuration and the
// address to serve on. Without flags it serves what
// docs/examples/quickstart.yaml expects (a test keeps the two in step).
func emulatorFlags(cmd *command, args []string, stdout io.Writer) (emulator.Config, string, error) {
	fs := cmd.flags(stdout)
	listen := fs.String("listen", "127.0.0.1:8089", "`ADDRESS` to serve on")
	appID := fs.String("app-id", "00000000-0000-4000-8000-000000000000", "the app `ID` the emulator accepts")
	// The default is not read from the environment here, so that --help
	// never shows a key.
	apiKey := fs.String("api-key", "emulator-key", "the API `KEY` the emulator accepts; $ONESIGNAL_CDC_ONESIGNAL_API_KEY when the flag is not given")
	tagLimit := fs.Int("tag-limit", 100, "most data tags (`N`) one user may hold; 0 for no cap")
	verify := fs.Bool("identity-verification", false, "check the player model's identity verification hashes (HMAC-SHA256 of the value keyed with the API key, hex)")
	player404 := fs.Bool("unknown-player-404", false, `answer PUT /players/{id} of an unknown id with 404, as the docs say, instead of 400 "No user with this id found"`)
	legacyKeys := fs.Bool("accept-legacy-keys", false, `accept the key the legacy way, "Authorization: Basic <key>", which OneSignal no longer takes; without it Basic gets 403 "Access denied"`)
	noPlayers200 := fs.Bool("no-players-200", false, `answer player-model tags for an external id no device carries with 200 {"success":true}, as the API spec does, instead of 404 "No players found"; the tags are dropped either way`)
	var f emulator.Faults
	var limits emulator.RateLimits
	fs.BoolVar(&limits.Enabled, "rate-limits", false, "enforce OneSignal's write limits, answering 429 with Retry-After")
	fs.IntVar(&limits.AppPerSecond, "rate-app", 0, "`N` writes per second for the app with --rate-limits; 0 for OneSignal's 1000")
	fs.IntVar(&limits.TargetPerSecond, "rate-target", 0, "`N` writes per second to one user or device with --rate-limits; 0 for OneSignal's 1")
	fs.IntVar(&limits.ViewPerSecond, "rate-view", 0, "`N` views (view user, view device) per second for the app with --rate-limits; 0 for OneSignal's 1")
	exportDelay := fs.Duration("export-delay", 0, "how long until a CSV export's file is ready (`DURATION`); 0 for OneSignal's pace, about 2,000 records a second")
	fs.Func("fault-status", "answer a share of requests with an error status, unapplied: `STATUS=SHARE,...`, e.g. 500=0.1,503=0.05,429=0.05", func(v string) error {
		var err error
		f.Status, err = parseShares(v)
		return err
	})
	fs.IntVar(&f.RetryAfter, "fault-retry-after", 1, "Retry-After `SECONDS` on injected 429s")
	fs.DurationVar(&f.Latency, "fault-latency", 0, "delay every request by this `DURATION` (e.g. 50ms)")
	fs.DurationVar(&f.LatencyMax, "fault-latency-max", 0, "with --fault-latency, delay by a random time up to this `DURATION`")
	fs.Float64Var(&f.Reset, "fault-reset", 0, "`SHARE` of requests (0 to 1) whose connection is reset before they are applied")
	fs.Float64Var(&f.Drop, "fault-drop", 0, "`SHARE` of requests (0 to 1) applied and then reset instead of answered")
	fs.Int64Var(&f.Seed, "seed", 0, "`SEED` of the fault draws: the same requests meet the same faults")
	if err := fs.parse(args); err != nil {
		return emulator.Config{}, "", err
	}
	if !flagGiven(fs.FlagSet, "api-key") {
		*apiKey = envOr("ONESIGNAL_CDC_ONESIGNAL_API_KEY", *apiKey)
	}
	// Checked here to name the flags; Config.Validate names Go's fields.
	if *tagLimit < 0 {
		return emulator.Config{}, "", usageError{fmt.Errorf("--tag-limit %d: use 0 for no cap, or the most tags a user may hold", *tagLimit)}
	}
	if limits.AppPerSecond < 0 || limits.TargetPerSecond < 0 {
		return emulator.Config{}, "", usageError{errors.New("--rate-app and --rate-target take 0 (OneSignal's limits) or more")}
	}
	if limits.ViewPerSecond < 0 {
		return emulator.Config{}, "", usageError{errors.New("--rate-view takes 0 (OneSignal's limit) or more")}
	}
	if *exportDelay < 0 {
		return emulator.Config{}, "", usageError{fmt.Errorf("--export-delay %s: use 0 for OneSignal's pace, or a positive duration", *exportDelay)}
	}
	return emulator.Config{
		AppID: *appID, APIKey: *apiKey, AcceptLegacyKeys: *legacyKeys, TagLimit: *tagLimit,
		UnknownPlayer404: *player404, NoPlayersAnswersOK: *noPlayers200, IdentityVerification: *verify,
		RateLimits: limits, ExportDelay: *exportDelay, Faults: f,
	}, *listen, nil
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

func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
