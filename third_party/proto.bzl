"""cc_grpc_proto: C++ and gRPC code from one .proto with Debian's protoc and grpc_cpp_plugin."""

def cc_grpc_proto(name, src, deps = [], grpc = True, visibility = None):
    """Generates `<name>`, a cc_library with the message and (if grpc) service code of `src`.

    The generated headers are included by their workspace path, e.g. "mooncake/proto/master.pb.h".
    """
    base = src[:-len(".proto")]
    pkg = native.package_name()
    outs = [base + ".pb.h", base + ".pb.cc"]
    if grpc:
        outs += [base + ".grpc.pb.h", base + ".grpc.pb.cc"]
    grpc_flags = ""
    if grpc:
        grpc_flags = "--grpc_out=$(GENDIR) --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin"
    native.genrule(
        name = name + "_gen",
        srcs = [src],
        outs = outs,
        cmd = "/usr/bin/protoc --proto_path=. --cpp_out=$(GENDIR) {grpc} {pkg}/{src}".format(
            grpc = grpc_flags,
            pkg = pkg,
            src = src,
        ),
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        copts = ["-w"],
        deps = deps + ["//third_party:protobuf"] + (["//third_party:grpc"] if grpc else []),
        visibility = visibility,
    )
