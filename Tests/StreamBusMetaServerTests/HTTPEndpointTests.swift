import Foundation
import Logging
import NIOConcurrencyHelpers
import StreamBusMetaServer
import StreamBusTransport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// A scripted status source: readiness and the faults it was given.
final class FakeStatusSource: OperationalStatusSource {
  let readinessValue = NIOLockedValueBox(Readiness(isReady: false, reason: "no leader known"))
  let faults = NIOLockedValueBox<[TransportFaults]>([])
  let refreshes = NIOLockedValueBox(0)

  func readiness() async -> Readiness { readinessValue.withLockedValue { $0 } }
  func refreshMetrics() async { refreshes.withLockedValue { $0 += 1 } }
  func setTransportFaults(_ faults: TransportFaults) async {
    self.faults.withLockedValue { $0.append(faults) }
  }
}

/// Plain HTTP/1.1 over a socket, to see exactly what the server writes.
enum RawHTTP {
  struct Response {
    var status: Int
    var headers: [String: String]
    var body: String
  }

  /// Runs the blocking exchange on a thread of its own: blocking a cooperative-pool thread
  /// could starve the server under test, which answers from the same pool.
  static func send(_ request: String, to address: HostPort) async -> Response? {
    await withCheckedContinuation { continuation in
      Thread.detachNewThread {
        continuation.resume(returning: exchange(request, with: address))
      }
    }
  }

  private static func exchange(_ request: String, with address: HostPort) -> Response? {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard descriptor >= 0 else { return nil }
    defer { close(descriptor) }
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(
      descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var socketAddress = sockaddr_in()
    socketAddress.sin_family = sa_family_t(AF_INET)
    socketAddress.sin_port = UInt16(address.port).bigEndian
    inet_pton(AF_INET, address.host, &socketAddress.sin_addr)
    let connected = withUnsafePointer(to: &socketAddress) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    guard connected == 0 else { return nil }
    let bytes = Array(request.utf8)
    _ = bytes.withUnsafeBytes {
      Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
    }
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
      let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
      if count <= 0 { break }
      received += buffer[0..<count]
    }
    let text = String(decoding: received, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { return nil }
    let lines = text[..<split.lowerBound].split(separator: "\r\n")
    guard let statusLine = lines.first, statusLine.split(separator: " ").count >= 2,
      let status = Int(statusLine.split(separator: " ")[1])
    else { return nil }
    var headers: [String: String] = [:]
    for line in lines.dropFirst() {
      guard let colon = line.firstIndex(of: ":") else { continue }
      headers[line[..<colon].lowercased()] = line[line.index(after: colon)...]
        .trimmingCharacters(in: .whitespaces)
    }
    return Response(status: status, headers: headers, body: String(text[split.upperBound...]))
  }

  static func get(_ path: String, from address: HostPort) async -> Response? {
    await send("GET \(path) HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n", to: address)
  }
}

struct HTTPEndpointTests {
  static func withServer(
    enableTestFaults: Bool = false,
    _ body: (HostPort, FakeStatusSource, MetaServerMetrics) async throws -> Void
  ) async throws {
    let source = FakeStatusSource()
    let metrics = MetaServerMetrics()
    let server = try await HTTPEndpointServer.bind(
      listen: HostPort(host: "127.0.0.1", port: 0),
      handler: OperationalEndpoints(
        source: source, metrics: metrics, enableTestFaults: enableTestFaults),
      logger: Logger(label: "test"))
    do {
      try await body(server.localAddress, source, metrics)
    } catch {
      await server.shutdown()
      throw error
    }
    await server.shutdown()
  }

  @Test func healthAndReadiness() async throws {
    try await Self.withServer { address, source, _ in
      let health = try #require(await RawHTTP.get("/healthz", from: address))
      #expect(health.status == 200)
      #expect(health.body == "ok\n")

      let notReady = try #require(await RawHTTP.get("/readyz", from: address))
      #expect(notReady.status == 503)
      #expect(notReady.body == "not ready: no leader known\n")

      source.readinessValue.withLockedValue {
        $0 = Readiness(isReady: true, reason: "leader 3; applied index 9, commit index 9")
      }
      let ready = try #require(await RawHTTP.get("/readyz", from: address))
      #expect(ready.status == 200)
      #expect(ready.body.hasPrefix("ready: leader 3"))
      #expect(ready.headers["content-length"] == "\(ready.body.utf8.count)")
    }
  }

  @Test func metricsAreRefreshedAndRenderedAsPrometheusText() async throws {
    try await Self.withServer { address, source, metrics in
      metrics.recordRaft(term: 4, commitIndex: 17, appliedIndex: 16, leaderID: 2, isLeader: false)
      metrics.recordImage(brokers: 3, fencedBrokers: 1, topics: 2, partitions: 7, offset: 16)
      metrics.recordRequest(api: "CreateTopics", errorName: "NONE", durationNanoseconds: 1_500_000)
      metrics.recordRequest(api: "CreateTopics", errorName: "NONE", durationNanoseconds: 900_000)
      metrics.recordRequest(
        api: "CreateTopics", errorName: "NOT_LEADER", durationNanoseconds: 100_000)
      let response = try #require(await RawHTTP.get("/metrics", from: address))
      #expect(response.status == 200)
      #expect(response.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
      #expect(source.refreshes.withLockedValue { $0 } == 1)
      let lines = Set(response.body.split(separator: "\n").map(String.init))
      for expected in [
        "streambus_metaserver_raft_term 4.0", "streambus_metaserver_raft_commit_index 17.0",
        "streambus_metaserver_raft_applied_index 16.0", "streambus_metaserver_is_leader 0.0",
        "streambus_metaserver_leader_changes_total 1", "streambus_metaserver_fenced_brokers 1.0",
        "streambus_metaserver_topics 2.0", "streambus_metaserver_partitions 7.0",
        #"streambus_metaserver_requests_total{api="CreateTopics",error="NONE"} 2"#,
        #"streambus_metaserver_requests_total{api="CreateTopics",error="NOT_LEADER"} 1"#,
        #"streambus_metaserver_request_duration_seconds_count{api="CreateTopics"} 3"#,
      ] {
        #expect(lines.contains(expected), "missing \(expected)")
      }
    }
  }

  @Test func leaderChangesAreCountedOncePerChange() {
    let metrics = MetaServerMetrics()
    func count() -> String? {
      String(decoding: metrics.render(), as: UTF8.self).split(separator: "\n")
        .first { $0.hasPrefix("streambus_metaserver_leader_changes_total ") }.map(String.init)
    }
    metrics.recordRaft(term: 1, commitIndex: 0, appliedIndex: 0, leaderID: nil, isLeader: false)
    #expect(count() == "streambus_metaserver_leader_changes_total 0")
    metrics.recordRaft(term: 1, commitIndex: 1, appliedIndex: 1, leaderID: 1, isLeader: true)
    metrics.recordRaft(term: 1, commitIndex: 2, appliedIndex: 2, leaderID: 1, isLeader: true)
    #expect(count() == "streambus_metaserver_leader_changes_total 1")
    metrics.recordRaft(term: 2, commitIndex: 2, appliedIndex: 2, leaderID: nil, isLeader: false)
    metrics.recordRaft(term: 2, commitIndex: 3, appliedIndex: 3, leaderID: 3, isLeader: false)
    #expect(count() == "streambus_metaserver_leader_changes_total 2")
  }

  @Test func unknownPathsAndMethods() async throws {
    try await Self.withServer { address, _, _ in
      #expect(await RawHTTP.get("/nope", from: address)?.status == 404)
      let post = await RawHTTP.send(
        "POST /readyz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        to: address)
      #expect(post?.status == 405)
      let garbage = await RawHTTP.send("NOT HTTP AT ALL\r\n\r\n", to: address)
      #expect(garbage?.status == 400)
    }
  }

  @Test func faultInjectionOnlyWhenEnabled() async throws {
    try await Self.withServer { address, source, _ in
      let refused = await RawHTTP.send(
        "POST /admin/faults?drop-outgoing-to=2 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
          + "Connection: close\r\n\r\n", to: address)
      #expect(refused?.status == 403)
      #expect(source.faults.withLockedValue { $0 }.isEmpty)
    }
    try await Self.withServer(enableTestFaults: true) { address, source, _ in
      func post(_ query: String) async -> RawHTTP.Response? {
        await RawHTTP.send(
          "POST /admin/faults?\(query) HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
            + "Connection: close\r\n\r\n", to: address)
      }
      #expect(await post("drop-outgoing-to=2,3&drop-incoming-from=1")?.status == 200)
      #expect(await post("")?.status == 200)
      #expect(await post("drop-outgoing-to=abc")?.status == 400)
      #expect(await post("partition=1")?.status == 400)
      #expect(
        source.faults.withLockedValue { $0 } == [
          TransportFaults(dropOutgoingTo: [2, 3], dropIncomingFrom: [1]), TransportFaults(),
        ])
    }
  }

  @Test func keepAliveServesPipelinedRequestsInOrder() async throws {
    try await Self.withServer { address, _, _ in
      let response = await RawHTTP.send(
        "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n"
          + "Connection: close\r\n\r\n", to: address)
      #expect(response?.status == 200)
      #expect(response?.body.contains("HTTP/1.1 404") == true)
    }
  }
}
