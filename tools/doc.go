// Module tools checks the deployment artifacts offline, with the libraries
// their own tools are built on: the Dockerfile against BuildKit's lint
// rules, the Helm chart rendered by Helm's engine and decoded strictly into
// Kubernetes' API types, the Compose file through compose-go, and the
// Grafana dashboard against the daemon's metric names. It is a module of
// its own so that the daemon's module keeps none of these dependencies.
//
// Run its tests with: cd tools && go test ./...
package tools
