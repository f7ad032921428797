/// Whether this node should receive traffic, and why not.
public struct Readiness: Sendable, Equatable {
  public var isReady: Bool
  /// One line for the operator: what is missing, or what the node knows.
  public var reason: String

  public init(isReady: Bool, reason: String) {
    self.isReady = isReady
    self.reason = reason
  }

  /// Ready once a leader is known and this node applied everything the leader had committed
  /// when this node last heard from it: a node that restarts or lags behind is not ready
  /// until it caught up, so a load balancer or `sbctl local up` never sends it readers early.
  public static func evaluate(
    nodeID: UInt64, leaderID: UInt64?, appliedIndex: UInt64, leaderCommitIndex: UInt64
  ) -> Readiness {
    guard let leaderID else {
      return Readiness(isReady: false, reason: "no leader known")
    }
    guard appliedIndex >= leaderCommitIndex else {
      return Readiness(
        isReady: false,
        reason: "applied index \(appliedIndex) behind the commit index \(leaderCommitIndex) "
          + "last heard from leader \(leaderID)")
    }
    let role = leaderID == nodeID ? "this node leads" : "leader \(leaderID)"
    return Readiness(
      isReady: true,
      reason: "\(role); applied index \(appliedIndex), commit index \(leaderCommitIndex)")
  }
}

/// Messages the Raft transport of a node drops on purpose, to test partitions and one-way
/// loss against real processes (`--enable-test-faults`, then `POST /admin/faults`).
public struct TransportFaults: Sendable, Equatable, CustomStringConvertible {
  /// Messages this node would send to these peers are dropped.
  public var dropOutgoingTo: Set<UInt64> = []
  /// Messages arriving from these peers are dropped.
  public var dropIncomingFrom: Set<UInt64> = []

  public init(dropOutgoingTo: Set<UInt64> = [], dropIncomingFrom: Set<UInt64> = []) {
    self.dropOutgoingTo = dropOutgoingTo
    self.dropIncomingFrom = dropIncomingFrom
  }

  public var description: String {
    func list(_ ids: Set<UInt64>) -> String {
      ids.isEmpty ? "none" : ids.sorted().map(String.init).joined(separator: ",")
    }
    return "drop-outgoing-to=\(list(dropOutgoingTo)) drop-incoming-from=\(list(dropIncomingFrom))"
  }

  /// Parses the query of `POST /admin/faults?drop-outgoing-to=2,3&drop-incoming-from=1`;
  /// a missing parameter means none.
  public init(request: HTTPEndpointRequest) throws(FaultParseError) {
    for (name, value) in request.query {
      var ids: Set<UInt64> = []
      for item in value.split(separator: ",") {
        guard let id = UInt64(item), id > 0 else {
          throw FaultParseError(message: "\(name): \"\(item)\" is not a node id")
        }
        ids.insert(id)
      }
      switch name {
      case "drop-outgoing-to": dropOutgoingTo = ids
      case "drop-incoming-from": dropIncomingFrom = ids
      default:
        throw FaultParseError(
          message: "unknown parameter \"\(name)\"; use drop-outgoing-to and drop-incoming-from")
      }
    }
  }
}

public struct FaultParseError: Error, Sendable {
  public let message: String
}

/// What the HTTP endpoints need from the running server.
public protocol OperationalStatusSource: Sendable {
  func readiness() async -> Readiness
  /// Brings the gauges up to date right before a scrape.
  func refreshMetrics() async
  /// Installs message-loss faults in the Raft transport (test builds of a cluster only).
  func setTransportFaults(_ faults: TransportFaults) async
}

/// `/healthz`, `/readyz`, `/metrics` and, when enabled, `/admin/faults`.
public struct OperationalEndpoints: HTTPEndpointHandler {
  public let source: any OperationalStatusSource
  public let metrics: MetaServerMetrics
  public let enableTestFaults: Bool

  public init(
    source: any OperationalStatusSource, metrics: MetaServerMetrics, enableTestFaults: Bool
  ) {
    self.source = source
    self.metrics = metrics
    self.enableTestFaults = enableTestFaults
  }

  public func handle(_ request: HTTPEndpointRequest) async -> HTTPEndpointResponse {
    switch (request.method, request.path) {
    case ("GET", "/healthz"), ("HEAD", "/healthz"):
      return HTTPEndpointResponse(status: 200, text: "ok\n")
    case ("GET", "/readyz"), ("HEAD", "/readyz"):
      let readiness = await source.readiness()
      return HTTPEndpointResponse(
        status: readiness.isReady ? 200 : 503,
        text: (readiness.isReady ? "ready: " : "not ready: ") + readiness.reason + "\n")
    case ("GET", "/metrics"):
      await source.refreshMetrics()
      return HTTPEndpointResponse(
        status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
        body: metrics.render())
    case ("POST", "/admin/faults"):
      guard enableTestFaults else {
        return HTTPEndpointResponse(
          status: 403,
          text: "fault injection is off; start the metaserver with --enable-test-faults\n")
      }
      do {
        let faults = try TransportFaults(request: request)
        await source.setTransportFaults(faults)
        return HTTPEndpointResponse(status: 200, text: "faults: \(faults)\n")
      } catch {
        return HTTPEndpointResponse(status: 400, text: "bad fault request: \(error.message)\n")
      }
    case (_, "/healthz"), (_, "/readyz"), (_, "/metrics"), (_, "/admin/faults"):
      return HTTPEndpointResponse(status: 405, text: "method \(request.method) not allowed\n")
    default:
      return HTTPEndpointResponse(
        status: 404, text: "no endpoint \(request.path); try /healthz, /readyz or /metrics\n")
    }
  }
}
