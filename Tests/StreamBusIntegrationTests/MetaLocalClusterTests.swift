import Foundation
import StreamBusMetaClient
import StreamBusTestSupport
import StreamBusTransport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// `sbctl local`: a cluster of detached processes described by DIR/cluster.json.
@Suite(.timeLimit(.minutes(2)))
struct MetaLocalClusterTests {
  struct ClusterFile: Decodable {
    struct Node: Decodable {
      let role: String
      let id: Int
      let pid: Int32
      let raftAddress: String?
      let apiAddress: String?
      let httpAddress: String?
      let dataDir: String
      let logFile: String
    }
    let metaservers: [Node]
    let brokers: [Node]
  }

  static func load(_ directory: URL) throws -> ClusterFile {
    try JSONDecoder().decode(
      ClusterFile.self, from: Data(contentsOf: directory.appendingPathComponent("cluster.json")))
  }

  static func isAlive(_ pid: Int32) -> Bool {
    guard pid > 0, kill(pid, 0) == 0 else { return false }
    let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
    guard let closing = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(after: closing)...].trimmingCharacters(in: .whitespaces).first
    return state != "Z" && state != "X"
  }

  /// The processes are not the harness's children: kill whatever cluster.json lists.
  static func killListed(_ directory: URL) {
    guard let file = try? load(directory) else { return }
    for node in file.metaservers + file.brokers where isAlive(node.pid) {
      kill(node.pid, SIGKILL)
    }
  }

  @Test func upStatusStopStartEnvAndDown() async throws {
    try await ProcessHarness.run { harness in
      let directory = harness.rootDirectory.appendingPathComponent("local")
      defer { Self.killListed(directory) }
      func sbctl(_ arguments: [String]) async throws -> ProcessResult {
        try await harness.run(executableNamed: "sbctl", arguments: arguments, timeoutMs: 60_000)
      }

      let refused = try await sbctl(["local", "up", "--dir", directory.path, "--brokers", "40"])
      #expect(refused.exit == .exited(code: 64))
      #expect(refused.stderrText.contains("--brokers must be 0...32"))

      // Metaservers only (LocalBrokerClusterTests covers brokers).
      try await sbctl([
        "local", "up", "--dir", directory.path, "--metaservers", "3", "--brokers", "0",
      ])
      .checkSuccess()
      let file = try Self.load(directory)
      #expect(file.metaservers.map(\.id) == [1, 2, 3])
      #expect(file.metaservers.allSatisfy { $0.role == "metaserver" && Self.isAlive($0.pid) })
      #expect(file.brokers.isEmpty)
      for node in file.metaservers {
        #expect(FileManager.default.fileExists(atPath: node.dataDir))
        #expect(FileManager.default.fileExists(atPath: node.logFile))
        #expect(HTTPProbe.get(node.httpAddress ?? "", "/readyz")?.status == 200)
      }

      // A second `up` on the same directory is refused.
      let again = try await sbctl(["local", "up", "--dir", directory.path])
      #expect(again.exit == .exited(code: 1))
      #expect(again.stderrText.contains("already runs"))

      let env = try await sbctl(["local", "env", "--dir", directory.path]).checkSuccess()
      let apiList = file.metaservers.compactMap(\.apiAddress).joined(separator: ",")
      #expect(
        env.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
          == "export SB_METASERVERS=\(apiList)")

      // The quorum works through the addresses in the file.
      let client = MetaClient(
        bootstrap: try apiList.split(separator: ",").map { try HostPort(parsing: String($0)) },
        requestTimeoutMs: 10_000, logger: .init(label: "test"))
      #expect(try await client.quorumStatus().voters.count == 3)

      try await sbctl(["local", "stop", "--dir", directory.path, "--node", "metaserver-2"])
        .checkSuccess()
      #expect(!Self.isAlive(file.metaservers[1].pid))
      let status = try await sbctl(["local", "status", "--dir", directory.path, "--output", "json"])
        .checkSuccess()
      let rows =
        try JSONSerialization.jsonObject(with: Data(status.stdoutText.utf8))
        as? [[String: Any]]
      #expect(rows?.map { $0["running"] as? Bool } == [true, false, true])

      try await sbctl(["local", "start", "--dir", directory.path, "--node", "metaserver-2"])
        .checkSuccess()
      let restarted = try Self.load(directory)
      #expect(restarted.metaservers[1].pid != file.metaservers[1].pid)
      #expect(Self.isAlive(restarted.metaservers[1].pid))
      #expect(HTTPProbe.get(restarted.metaservers[1].httpAddress ?? "", "/readyz")?.status == 200)

      let unknownNode = try await sbctl(
        ["local", "stop", "--dir", directory.path, "--node", "metaserver-9"])
      #expect(unknownNode.exit == .exited(code: 1))
      #expect(unknownNode.stderrText.contains("no node \"metaserver-9\""))

      await client.close()
      try await sbctl(["local", "down", "--dir", directory.path]).checkSuccess()
      #expect(restarted.metaservers.allSatisfy { !Self.isAlive($0.pid) })
      // Without --purge everything stays for inspection.
      #expect(
        FileManager.default.fileExists(
          atPath: directory.appendingPathComponent("cluster.json").path))
      try await sbctl(["local", "down", "--dir", directory.path, "--purge"]).checkSuccess()
      #expect(!FileManager.default.fileExists(atPath: directory.path))
    }
  }
}
