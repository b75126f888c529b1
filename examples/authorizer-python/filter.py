#!/usr/bin/env python3
"""Filter a list through cedargate's Authorizer API, from Python.

The same call as examples/authorizer-filter/ (Rust): one BatchIsAuthorized for a list of
documents, keeping those the user may see. Stubs come from proto/ with grpcio-tools:

    PYTHONPATH=.tools/grpc python3 -m grpc_tools.protoc -Iproto \
        --python_out=OUT --grpc_python_out=OUT proto/cedargate/v1/authorizer.proto
    CEDARGATE_TOKEN=... PYTHONPATH=OUT:.tools/grpc python3 examples/authorizer-python/filter.py \
        --addr 127.0.0.1:9191 --principal 'User::"bob"' --action 'Action::"view"' --documents docs.json

The caller's token comes from CEDARGATE_TOKEN (not the command line, which `ps` shows). Prints
one JSON line: the visible ids and each decision; on a refused call, `error: CODE: message` on
stderr and exit status 2.
"""

import argparse
import json
import os
import sys

import grpc

from cedargate.v1 import authorizer_pb2, authorizer_pb2_grpc


def uid(text):
    """`Type::"id"` -> EntityUid."""
    ty, _, ident = text.rpartition("::")
    return authorizer_pb2.EntityUid(type=ty, id=ident.strip('"'))


def visible(stub, token, principal, action, documents, context):
    request = authorizer_pb2.BatchIsAuthorizedRequest(
        principal=uid(principal),
        items=[
            authorizer_pb2.BatchItem(
                action=uid(action),
                resource=authorizer_pb2.EntityUid(type=d["uid"]["type"], id=d["uid"]["id"]),
            )
            for d in documents
        ],
        context_json=json.dumps(context),
        entities_json=json.dumps(documents),
    )
    answer = stub.BatchIsAuthorized(request, metadata=[("authorization", f"Bearer {token}")])
    allowed = [d.effect == authorizer_pb2.ALLOW for d in answer.results]
    return {
        "visible": [doc["uid"]["id"] for doc, ok in zip(documents, allowed) if ok],
        "decisions": [
            {"allow": ok, "reason": d.reason, "policies": [p.id for p in d.policies]}
            for d, ok in zip(answer.results, allowed)
        ],
        "batch_id": answer.batch_id,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:9191")
    parser.add_argument("--principal", default='User::"bob"')
    parser.add_argument("--action", default='Action::"view"')
    parser.add_argument("--documents", required=True)
    parser.add_argument("--context", default="{}")
    args = parser.parse_args()
    token = os.environ.get("CEDARGATE_TOKEN")
    if not token:
        sys.exit("set CEDARGATE_TOKEN")
    with open(args.documents) as f:
        documents = json.load(f)
    with grpc.insecure_channel(args.addr) as channel:
        stub = authorizer_pb2_grpc.AuthorizerStub(channel)
        try:
            result = visible(
                stub, token, args.principal, args.action, documents, json.loads(args.context)
            )
        except grpc.RpcError as e:
            print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
            sys.exit(2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
