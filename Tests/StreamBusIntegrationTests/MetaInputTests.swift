import Foundation
import StreamBusMetaProtocol
import StreamBusProtocol
import StreamBusTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Bad input from outside: malformed API frames and garbage configuration.
@Suite(.timeLimit(.minutes(2)))
struct MetaInputTests {
  static func framed(_ payload: [UInt8]) -> [UInt8] {
    let length = UInt32(payload.count)
    return [
      UInt8(length >> 24), UInt8((length >> 16) & 0xff), UInt8((length >> 8) & 0xff),
      UInt8(length & 0xff),
    ] + payload
  }

  static func header(_ apiKey: ApiKey, correlationId: Int32, version: Int16 = 0) -> [UInt8] {
    var writer = WireWriter()
    RequestHeader(
      apiKey: apiKey, apiVersion: version, correlationId: correlationId, clientId: "hostile"
    ).encode(into: &writer)
    return writer.bytes
  }

  /// Reads one answer and decodes its header.
  static func answerHeader(_ socket: RawSocket) throws -> ResponseHeader? {
    guard case .frame(let payload) = socket.readFrame() else { return nil }
    return try ResponseHeader.decode(payload: payload)
  }

  @Test func malformedApiFramesGetClearErrorsAndTheServerKeepsServing() async throws {
    try await ProcessHarness.run { harness in
      let cluster = try await MetaCluster.start(harness, count: 1)
      let port = cluster.node(1).apiPort
      let socket = try RawSocket(host: "127.0.0.1", port: port)

      // An api key that is not a metaserver API: error answer, connection stays open.
      socket.write(Self.framed(Self.header(ApiKey(rawValue: 1199), correlationId: 1)))
      let unknown = try #require(try Self.answerHeader(socket))
      #expect(unknown.correlationId == 1)
      #expect(unknown.errorCode != .none)
      #expect(unknown.errorMessage?.contains("1199") == true)

      // An unsupported version of a known API.
      socket.write(
        Self.framed(Self.header(MetaApiKey.describeCluster, correlationId: 2, version: 9)))
      let version = try #require(try Self.answerHeader(socket))
      #expect(version.errorCode == .unsupportedVersion)
      #expect(version.errorMessage?.contains("version 9") == true)

      // CreateTopics whose topic array claims more elements than the bytes can hold.
      var body = WireWriter()
      body.writeInt32(1_000_000)
      socket.write(
        Self.framed(Self.header(MetaApiKey.createTopics, correlationId: 3) + body.bytes))
      let truncated = try #require(try Self.answerHeader(socket))
      #expect(truncated.correlationId == 3)
      #expect(truncated.errorCode != .none)
      #expect(truncated.errorMessage?.isEmpty == false)

      // Trailing bytes after a valid DescribeCluster body.
      socket.write(
        Self.framed(Self.header(MetaApiKey.describeCluster, correlationId: 4) + [1, 2, 3]))
      let trailing = try #require(try Self.answerHeader(socket))
      #expect(trailing.correlationId == 4)
      #expect(trailing.errorCode != .none)

      // The same connection still gets real answers.
      socket.write(
        MetaMessage.encodeRequestFrame(
          QuorumStatusRequest(),
          header: RequestHeader(
            apiKey: MetaApiKey.quorumStatus, apiVersion: 0, correlationId: 5, clientId: "ok")))
      guard case .frame(let payload) = socket.readFrame() else {
        Issue.record("no answer to a valid request after malformed ones")
        return
      }
      let (statusHeader, reply) = try MetaMessage.decodeReply(
        to: QuorumStatusRequest.self, version: 0, payload: payload)
      #expect(statusHeader.correlationId == 5)
      if case .success(let status) = reply {
        #expect(status.leaderID == 1)
      } else {
        Issue.record("QuorumStatus failed: \(statusHeader)")
      }

      // A header that does not parse closes the connection.
      let closing = try RawSocket(host: "127.0.0.1", port: port)
      closing.write(Self.framed([0x04, 0x4c]))
      #expect(closing.readFrame() == .closed)
      // So does a length prefix beyond the frame limit.
      let oversized = try RawSocket(host: "127.0.0.1", port: port)
      oversized.write([0x7f, 0xff, 0xff, 0xff, 0x00])
      #expect(oversized.readFrame() == .closed)

      // The server is unharmed.
      let client = cluster.client()
      #expect(try await client.quorumStatus().leaderID == 1)
      #expect(cluster.process(1)?.isRunning == true)
      await client.close()
    }
  }

  /// Runs `metaserver` with `arguments` and returns (exit, stderr).
  static func runMetaserver(_ harness: ProcessHarness, _ arguments: [String]) async throws
    -> (ProcessExit, String)
  {
    let result = try await harness.run(
      executableNamed: "metaserver", arguments: arguments, timeoutMs: 20_000)
    return (result.exit, result.stderrText)
  }

  @Test func garbageConfigurationIsRefusedWithExitCode64AndTheOffendingLine() async throws {
    try await ProcessHarness.run { harness in
      let directory = try harness.makeDirectory("configs")
      func write(_ name: String, _ text: String) throws -> String {
        let path = directory.appendingPathComponent(name).path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
      }
      let base = [
        "--data-dir", directory.appendingPathComponent("data").path,
        "--raft-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--http-listen",
        "127.0.0.1:0",
      ]
      let cases: [(String, [String], [String])] = [
        (
          "binary garbage", ["--config", try write("binary.conf", "\u{1}\u{2}garbage\n")],
          ["binary.conf:1", "expected \"key = value\""]
        ),
        (
          "unknown key",
          ["--config", try write("unknown.conf", "# ok\nnode-id = 1\nsnapshots = 3\n")],
          ["unknown.conf:3", "unknown key \"snapshots\""]
        ),
        (
          "bad number", ["--config", try write("number.conf", "node-id = one\n")],
          ["number.conf:1", "node-id", "not an integer"]
        ),
        (
          "bad initial cluster",
          ["--config", try write("cluster.conf", "node-id = 1\ninitial-cluster = 1=nowhere\n")],
          ["initial-cluster", "cluster.conf:2"]
        ),
        (
          "missing file", ["--config", directory.appendingPathComponent("absent.conf").path],
          ["absent.conf"]
        ),
        ("no node id", ["--initial-cluster", "1=127.0.0.1:7000"], ["--node-id is required"]),
        (
          "neither bootstrap nor join", ["--node-id", "1"],
          ["--initial-cluster", "--join"]
        ),
        (
          "self not in cluster", ["--node-id", "4", "--initial-cluster", "1=127.0.0.1:7000"],
          ["does not list this node"]
        ),
      ]
      for (name, arguments, expectedParts) in cases {
        let (exit, stderr) = try await Self.runMetaserver(harness, base + arguments)
        #expect(exit == .exited(code: 64), "\(name): \(exit)")
        for part in expectedParts {
          #expect(stderr.contains(part), "\(name): stderr lacks \"\(part)\":\n\(stderr)")
        }
      }
    }
  }
}
