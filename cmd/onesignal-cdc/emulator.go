package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal/onesignaltest"
)

// emulator serves the OneSignal emulator until ctx ends.
func emulator(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("onesignal-cdc emulator", flag.ContinueOnError)
	fs.SetOutput(stdout)
	listen := fs.String("listen", "127.0.0.1:8089", "address to serve on")
	appID := fs.String("app-id", "00000000-0000-4000-8000-000000000000", "the app ID the emulator accepts")
	apiKey := fs.String("api-key", envOr("ONESIGNAL_CDC_ONESIGNAL_API_KEY", "emulator-key"), "the API key the emulator accepts ($ONESIGNAL_CDC_ONESIGNAL_API_KEY)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	srv, err := onesignaltest.Start(onesignaltest.Config{AppID: *appID, APIKey: *apiKey}, *listen)
	if err != nil {
		return usageError{err}
	}
	fmt.Fprintf(stdout, "OneSignal emulator for app %s at %s (state: %s/emulator/state)\n", *appID, srv.URL(), srv.URL())
	<-ctx.Done()
	return srv.Close()
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
