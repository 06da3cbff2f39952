// TritonJSON: the JSON documents of Triton's metadata, statistics, configuration and logging
// routes, with the same keys (and the same always-present defaults) as Triton writes them.
import JSONCore
import Serving
import SwiftProtobuf
import Telemetry
import TritonProtos

enum TritonJSON {
    static func serverMetadata(_ m: ServerMetadata) -> JSON {
        .object(JSONObject([
            ("name", .string(m.name)), ("version", .string(m.version)),
            ("extensions", .array(m.extensions.map { .string($0) })),
        ]))
    }

    /// `version` and `reason` are left out when empty, as Triton leaves them out.
    static func repositoryIndex(_ index: [RepositoryModel]) -> JSON {
        .array(index.map { m in
            var o = JSONObject([("name", .string(m.name))])
            if !m.version.isEmpty { o.members.append(("version", .string(m.version))) }
            o.members.append(("state", .string(m.state)))
            if !m.reason.isEmpty { o.members.append(("reason", .string(m.reason))) }
            return .object(o)
        })
    }

    static func modelMetadata(_ m: ModelMetadata) -> JSON {
        func tensors(_ list: [TensorMetadata]) -> JSON {
            .array(list.map { t in
                .object(JSONObject([("name", .string(t.name)), ("datatype", .string(t.datatype.rawValue)),
                                    ("shape", .array(t.shape.map { .int(Int64($0)) }))]))
            })
        }
        return .object(JSONObject([
            ("name", .string(m.name)), ("versions", .array(m.versions.map { .string($0) })),
            ("platform", .string(m.platform)), ("inputs", tensors(m.inputs)), ("outputs", tensors(m.outputs)),
        ]))
    }

    /// `{"model_stats": [...]}`; cache and per-response figures are zero / empty.
    static func statistics(_ stats: [ModelStatistics]) -> JSON {
        .object(JSONObject([("model_stats", .array(stats.map(modelStatistics)))]))
    }

    static func modelStatistics(_ s: ModelStatistics) -> JSON {
        func duration(_ d: ModelStatistics.Duration) -> JSON {
            .object(JSONObject([("count", .uint64(d.count)), ("ns", .uint64(d.ns))]))
        }
        return .object(JSONObject([
            ("name", .string(s.name)), ("version", .string(s.version)),
            ("last_inference", .uint64(s.lastInference)), ("inference_count", .uint64(s.inferenceCount)),
            ("execution_count", .uint64(s.executionCount)),
            ("inference_stats", .object(JSONObject([
                ("success", duration(s.success)), ("fail", duration(s.fail)), ("queue", duration(s.queue)),
                ("compute_input", duration(s.computeInput)), ("compute_infer", duration(s.computeInfer)),
                ("compute_output", duration(s.computeOutput)),
                ("cache_hit", duration(.init())), ("cache_miss", duration(.init())),
            ]))),
            ("response_stats", .object(JSONObject())), ("batch_stats", .array([])), ("memory_usage", .array([])),
        ]))
    }

    /// The model configuration as Triton's HTTP endpoint writes it: protobuf JSON with proto
    /// field names, 64-bit integers as numbers, and (like protobuf's
    /// always_print_primitive_fields) the scalar and list fields clients read present even when
    /// they hold their default.
    static func modelConfig(_ config: Inference_ModelConfig) throws -> [UInt8] {
        var options = JSONEncodingOptions()
        options.preserveProtoFieldNames = true
        options.alwaysPrintInt64sAsNumbers = true
        let text = try config.jsonString(options: options)
        guard case .object(var root) = try JSONParser.parse(Array(text.utf8), options: .kserve) else {
            throw ServingError(.internalError, "model configuration did not encode as a JSON object")
        }
        root.addDefaults([
            ("name", .string("")), ("platform", .string("")), ("backend", .string("")), ("runtime", .string("")),
            ("max_batch_size", .int(0)), ("input", .array([])), ("output", .array([])),
            ("batch_input", .array([])), ("batch_output", .array([])), ("instance_group", .array([])),
            ("default_model_filename", .string("")), ("cc_model_filenames", .object(JSONObject())),
            ("metric_tags", .object(JSONObject())), ("parameters", .object(JSONObject())),
            ("model_warmup", .array([])),
        ])
        root.mapArray("input") {
            $0.addDefaults([
                ("name", .string("")), ("data_type", .string("TYPE_INVALID")), ("format", .string("FORMAT_NONE")),
                ("dims", .array([])), ("is_shape_tensor", .bool(false)), ("allow_ragged_batch", .bool(false)),
                ("optional", .bool(false)), ("is_non_linear_format_io", .bool(false)),
            ])
        }
        root.mapArray("output") {
            $0.addDefaults([
                ("name", .string("")), ("data_type", .string("TYPE_INVALID")), ("dims", .array([])),
                ("label_filename", .string("")), ("is_shape_tensor", .bool(false)),
                ("is_non_linear_format_io", .bool(false)),
            ])
        }
        if case .object(var policy)? = root["model_transaction_policy"] {
            policy.addDefaults([("decoupled", .bool(false))])
            root.set("model_transaction_policy", .object(policy))
        }
        return JSONWriter.encode(.object(root))
    }

    static func logging(_ s: LogSettings) -> JSON {
        .object(JSONObject([
            ("log_file", .string(s.file)), ("log_info", .bool(s.info)), ("log_warning", .bool(s.warning)),
            ("log_error", .bool(s.error)), ("log_verbose_level", .int(Int64(s.verboseLevel))),
            ("log_format", .string(s.format.rawValue)),
        ]))
    }

    /// Triton's rules: null leaves a setting as it is; log_file cannot change over the network
    /// (501). Unlike Triton, a request with an invalid setting changes nothing.
    static func applyLogging(_ o: JSONObject, to s: inout LogSettings) throws {
        for (key, value) in o.members where value != .null {
            switch (key, value) {
            case ("log_file", _):
                throw ServingError(.notImplemented, "log file location can not be updated through network protocol")
            case ("log_info", .bool(let v)): s.info = v
            case ("log_warning", .bool(let v)): s.warning = v
            case ("log_error", .bool(let v)): s.error = v
            case ("log_verbose_level", .int(let v)) where v >= 0: s.verboseLevel = UInt32(clamping: v)
            case ("log_format", .string(let v)):
                guard let format = LogSettings.Format(rawValue: v) else {
                    throw badRequest("invalid argument for log_format, got: \(v)")
                }
                s.format = format
            case ("log_info", _), ("log_warning", _), ("log_error", _), ("log_verbose_level", _), ("log_format", _):
                throw badRequest("Unable to parse '\(key)'")
            default:
                throw badRequest("Logging setting '\(key)' is not supported")
            }
        }
    }
}

extension JSON {
    /// A UInt64 statistic: an .int while it fits.
    static func uint64(_ v: UInt64) -> JSON { v <= UInt64(Int64.max) ? .int(Int64(v)) : .uint(v) }
}

extension JSONObject {
    mutating func addDefaults(_ defaults: [(String, JSON)]) {
        for (key, value) in defaults where self[key] == nil { members.append((key, value)) }
    }

    mutating func set(_ key: String, _ value: JSON) {
        if let i = members.firstIndex(where: { $0.key == key }) { members[i].value = value } else { members.append((key, value)) }
    }

    mutating func mapArray(_ key: String, _ transform: (inout JSONObject) -> Void) {
        guard case .array(let items)? = self[key] else { return }
        set(key, .array(items.map { item in
            guard case .object(var o) = item else { return item }
            transform(&o)
            return .object(o)
        }))
    }
}
