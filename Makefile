.PHONY: test build demo
test:
	./scripts/test
build:
	go build -o bffgate ./cmd/bffgate
demo:
	go run ./cmd/bffgate demo
