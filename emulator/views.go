package emulator

import "net/http"

// limitView charges a view (view user and its identity, view device,
// view devices) to the app's view budget as it arrives: OneSignal allows
// 1 a second per app on its view endpoints, apart from its writes' 1,000.
// Its "up to 10 look-back requests a second" is not emulated.
func (e *Emulator) limitView(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e.limits != nil {
			if wait := e.limits.view.admit("", e.now()); wait > 0 {
				e.writeRateLimited(w, wait)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
