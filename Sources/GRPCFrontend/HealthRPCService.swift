// HealthRPCService: the standard grpc.health.v1.Health.Check, as Triton serves it on its gRPC
// port: SERVING while the server is ready, NOT_SERVING otherwise (whatever service name is
// asked about, like Triton), and NOT_SERVING once this endpoint has started shutting down.
import GRPCCore
import Serving
import Synchronization
import TritonProtos

struct HealthRPCService: Grpc_Health_V1_Health.SimpleServiceProtocol {
    let service: any InferenceService
    let draining: @Sendable () -> Bool

    func check(request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext) async throws -> Grpc_Health_V1_HealthCheckResponse {
        var r = Grpc_Health_V1_HealthCheckResponse()
        r.status = !draining() && service.isReady() ? .serving : .notServing
        return r
    }
}
