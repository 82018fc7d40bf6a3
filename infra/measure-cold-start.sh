#!/usr/bin/env bash
# Cold start of each Lambda function, measured locally: the release binary (host architecture)
# is started by hand against `cargo lambda watch --only-lambda-apis` (cargo-lambda's emulator of
# the Lambda Runtime API), invoked once with its real event shape (`cargo lambda invoke`) while
# it talks to DynamoDB and SQS on a local moto server, under `/usr/bin/time -v`. Prints, per
# function: the bootstrap's size, start-to-first-response (process start until the invoke's
# answer arrived) and peak RSS.
#
#   bash infra/measure-cold-start.sh      # needs moto_server, cargo-lambda, python3 on PATH
#
# The configuration is paybridge.example.toml (the in-memory ERP and PSP of examples/orders.json),
# so the figures are paybridge's own start and work, not a remote ERP's or PSP's latency.
# Deployed bootstraps are arm64 (`cargo lambda build --release --arm64`); the emulator runs the
# host's build of the same code, which needs no emulation layer.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
MOTO_PORT=${MOTO_PORT:-5057}
RT_PORT=${RT_PORT:-9011}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${KEEP_WORK:-}" ] && echo "work files: $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

for tool in moto_server cargo-lambda python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

# SKIP_BUILD=1 measures the binaries already in $TARGET/release.
[ -n "${SKIP_BUILD:-}" ] || cargo build -q --release -p erp-poller -p payment-worker -p unzer-webhook -p paybridge

moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null && break; sleep 0.2; done
export AWS_REGION=eu-central-1 AWS_DEFAULT_REGION=eu-central-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"

# Table and queue created by the product itself (the key schema `store::dynamo` owns).
QUEUE_URL=$("$TARGET/release/paybridge" aws-setup --aws-endpoint "$AWS_ENDPOINT_URL" --table paybridge --queue-name paybridge-jobs)
export PAYBRIDGE_CONFIG="$ROOT/paybridge.example.toml" PAYBRIDGE_TABLE=paybridge PAYBRIDGE_QUEUE_URL="$QUEUE_URL"
export AWS_LAMBDA_LOG_LEVEL=warn

# One event per function, in the shapes AWS sends (see the handler tests' fixtures).
cat >"$WORK/erp-poller.json" <<'EOF'
{"version":"0","id":"0d5b3b4c-8f3e-4c5e-9b53-7f0f2a1c9e11","detail-type":"Scheduled Event","source":"aws.events","account":"123456789012","time":"2026-12-01T10:00:00Z","region":"eu-central-1","resources":["arn:aws:events:eu-central-1:123456789012:rule/paybridge-poll"],"detail":{}}
EOF
python3 - "$WORK/payment-worker.json" <<'EOF'
import json, sys
job = {"job": "evaluate", "order_pk": "T#demo-shop#O#demo#10001"}
rec = {"messageId": "6f1c7a52-0d8e-4b0b-9a51-3c1f0e9e2a01", "receiptHandle": "receipt-1",
       "body": json.dumps(job), "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795420800000",
       "SenderId": "AROAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1795420800120"},
       "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
       "eventSourceARN": "arn:aws:sqs:eu-central-1:123456789012:paybridge-jobs", "awsRegion": "eu-central-1"}
json.dump({"Records": [rec]}, open(sys.argv[1], "w"))
EOF
python3 - "$WORK/unzer-webhook.json" <<'EOF'
import json, sys
body = json.dumps({"event": "payment.completed", "publicKey": "s-pub-2a10DEMO0000000000000000demo",
                   "retrieveUrl": "https://api.unzer.com/v1/payments/s-pay-10001", "paymentId": "s-pay-10001"})
ev = {"version": "2.0", "routeKey": "POST /webhooks/unzer", "rawPath": "/webhooks/unzer", "rawQueryString": "",
      "headers": {"content-type": "application/json", "host": "a1b2c3d4e5.execute-api.eu-central-1.amazonaws.com"},
      "requestContext": {"accountId": "123456789012", "apiId": "a1b2c3d4e5", "domainName": "a1b2c3d4e5.execute-api.eu-central-1.amazonaws.com",
                         "domainPrefix": "a1b2c3d4e5", "http": {"method": "POST", "path": "/webhooks/unzer", "protocol": "HTTP/1.1",
                         "sourceIp": "203.0.113.10", "userAgent": "Unzer"}, "requestId": "r1", "routeKey": "POST /webhooks/unzer",
                         "stage": "$default", "time": "01/Dec/2026:10:00:00 +0000", "timeEpoch": 1795420800000},
      "isBase64Encoded": False, "body": body}
json.dump(ev, open(sys.argv[1], "w"))
EOF

printf '%-15s %12s %14s %10s  %s\n' function "size (B)" "first resp." "peak RSS" "answer"
for fn in erp-poller payment-worker unzer-webhook; do
    cargo lambda watch --only-lambda-apis -A 127.0.0.1 -P "$RT_PORT" >"$WORK/watch-$fn.log" 2>&1 &
    WATCH=$!
    PIDS+=("$WATCH")
    for _ in $(seq 1 100); do grep -q "starting Runtime server" "$WORK/watch-$fn.log" && break; sleep 0.1; done
    # The invoke waits for the function; the function starts right after it.
    cargo lambda invoke -A 127.0.0.1 -P "$RT_PORT" --data-file "$WORK/$fn.json" _ >"$WORK/answer-$fn.json" 2>&1 &
    INVOKE=$!
    sleep 0.3
    start=$(date +%s%N)
    AWS_LAMBDA_FUNCTION_NAME=_ AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256 \
        AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$RT_PORT/.rt" \
        /usr/bin/time -v -o "$WORK/time-$fn.txt" "$TARGET/release/$fn" >"$WORK/fn-$fn.log" 2>&1 &
    FN=$!
    wait "$INVOKE" || echo "$fn: the invoke failed: $(cat "$WORK/answer-$fn.json")" >&2
    end=$(date +%s%N)
    kill -TERM "$(pgrep -P "$FN")" 2>/dev/null || true
    wait "$FN" 2>/dev/null || true
    kill "$WATCH" 2>/dev/null || true
    wait "$WATCH" 2>/dev/null || true
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time-$fn.txt")
    size=$(stat -c %s "$TARGET/release/$fn")
    printf '%-15s %12s %11s ms %7s kB  %s\n' "$fn" "$size" "$(((end - start) / 1000000))" "$rss" \
        "$(head -c 120 "$WORK/answer-$fn.json" | tr '\n' ' ')"
done
