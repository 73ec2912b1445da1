#!/usr/bin/python3
"""A pipestack filter plugin in Python: drops packets to the destination
ports listed in its config ({"block": [53, 5353]}) and accepts the rest.

It speaks protocol v1 (modules/filter/plugin/proto/filterplugin.proto) over
hashicorp/go-plugin's gRPC handshake with AutoMTLS, using Debian's
python3-grpcio, python3-protobuf and python3-cryptography; the only
generated file is filterplugin_pb2.py (protoc --python_out; the gRPC
service is registered by hand below, so no grpc_tools stubs are needed).
"""

import base64
import datetime
import json
import os
import struct
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import filterplugin_pb2 as pb  # noqa: E402

SERVICE = "pipestack.filterplugin.v1.FilterPlugin"
RECORD = struct.Struct("<10I16s16s")  # 72 bytes, see the .proto
ACCEPT, DROP = 4, 5
VERSION = "python-1"


class Plugin:
    def __init__(self):
        self.block = set()
        self.configured = False

    def Configure(self, req, ctx):
        if req.protocol_version != 1:
            return pb.ConfigureResponse(error="protocol version %d, this plugin speaks 1" % req.protocol_version)
        try:
            cfg = json.loads(req.config_json or b"{}")
            self.block = set(int(p) for p in cfg.get("block", []))
        except (ValueError, TypeError) as e:
            return pb.ConfigureResponse(error="config: %s" % e)
        self.configured = True
        return pb.ConfigureResponse(version=VERSION, data=pb.DATA_NONE, target=True)

    def Health(self, req, ctx):
        return pb.HealthResponse(serving=self.configured, status="serving" if self.configured else "not configured")

    def Judge(self, batches, ctx):
        for b in batches:
            n = len(b.records) // RECORD.size
            out = bytearray(n)
            for i in range(n):
                f = RECORD.unpack_from(b.records, i * RECORD.size)
                dport = f[2] & 0xFFFF
                out[i] = DROP if dport in self.block else ACCEPT
            yield pb.Answers(seq=b.seq, answers=bytes(out))


def certificate():
    """A self-signed certificate for localhost, as go-plugin's AutoMTLS
    expects of a plugin: the host pins it from the handshake line."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pipestack plugin")])
    now = datetime.datetime.utcnow()
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(seconds=30))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=True, content_commitment=False,
                                     data_encipherment=False, key_agreement=False, crl_sign=False, encipher_only=False,
                                     decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    der = cert.public_bytes(serialization.Encoding.DER)
    keypem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return keypem, pem, der


def watch_parent(ppid):
    """Exit when the host is gone (the plugin was reparented)."""
    while True:
        time.sleep(0.25)
        if os.getppid() != ppid:
            os._exit(3)


def main():
    if os.environ.get("PIPESTACK_FILTER_PLUGIN") != "8c0e3f4e2d6a4b1f9a7e5c3b1d0f2e4a":
        sys.stderr.write("This is a pipestack filter plugin: declare it under plugins: in a pipeline file.\n")
        sys.exit(1)
    if "1" not in os.environ.get("PLUGIN_PROTOCOL_VERSIONS", "1").split(","):
        sys.stderr.write("the host does not speak protocol version 1\n")
        sys.exit(1)
    threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()

    p = Plugin()
    handlers = {
        "Configure": grpc.unary_unary_rpc_method_handler(p.Configure, request_deserializer=pb.ConfigureRequest.FromString,
                                                         response_serializer=pb.ConfigureResponse.SerializeToString),
        "Health": grpc.unary_unary_rpc_method_handler(p.Health, request_deserializer=pb.HealthRequest.FromString,
                                                      response_serializer=pb.HealthResponse.SerializeToString),
        "Judge": grpc.stream_stream_rpc_method_handler(p.Judge, request_deserializer=pb.Batch.FromString,
                                                       response_serializer=pb.Answers.SerializeToString),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))

    sockdir = os.environ.get("PLUGIN_UNIX_SOCKET_DIR") or tempfile.mkdtemp()
    sock = os.path.join(sockdir, "plugin-python.sock")
    addr = "unix:" + sock
    client_cert = os.environ.get("PLUGIN_CLIENT_CERT")
    cert_field = ""
    if client_cert:
        keypem, pem, der = certificate()
        creds = grpc.ssl_server_credentials([(keypem, pem)], root_certificates=client_cert.encode(), require_client_auth=True)
        server.add_secure_port(addr, creds)
        cert_field = base64.b64encode(der).decode().rstrip("=")
    else:
        server.add_insecure_port(addr)
    server.start()
    # go-plugin's handshake: core version|app protocol|network|address|protocol|cert
    print("1|1|unix|%s|grpc|%s" % (sock, cert_field), flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
