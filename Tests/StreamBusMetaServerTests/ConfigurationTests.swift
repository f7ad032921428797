import Foundation
import StreamBusMetaServer
import StreamBusTransport
import Testing

struct ConfigurationTests {
  static let required: [String: String?] = [
    "node-id": "2", "data-dir": "/tmp/meta", "raft-listen": "127.0.0.1:7001",
    "api-listen": "127.0.0.1:7002", "http-listen": "127.0.0.1:7003",
    "initial-cluster": "1=127.0.0.1:7000,2=127.0.0.1:7001,3=127.0.0.1:7004",
  ]

  static func values(_ flags: [String: String?], file: String? = nil) throws -> ConfigValues {
    let base =
      try file.map {
        try ConfigValues(
          parsing: $0, path: "meta.conf", validKeys: MetaServerConfiguration.configKeys)
      } ?? ConfigValues(validKeys: MetaServerConfiguration.configKeys)
    return base.merging(flags: flags)
  }

  static func message(_ flags: [String: String?], file: String? = nil) -> String? {
    do {
      _ = try MetaServerConfiguration(values: values(flags, file: file))
      return nil
    } catch let error as TransportError {
      return error.message
    } catch {
      return "\(error)"
    }
  }

  @Test func flagsAndFileCombineWithFlagsWinning() throws {
    let configuration = try MetaServerConfiguration(
      values: Self.values(
        Self.required.merging(["snapshot-threshold-entries": "50"]) { $1 },
        file: "snapshot-threshold-entries = 10\nbroker-session-timeout-ms = 2000\n"))
    #expect(configuration.nodeID == 2)
    #expect(configuration.initialCluster.count == 3)
    #expect(configuration.initialCluster[3] == HostPort(host: "127.0.0.1", port: 7004))
    #expect(configuration.snapshotThresholdEntries == 50)
    #expect(configuration.brokerSessionTimeoutMs == 2_000)
    #expect(configuration.join.isEmpty)
    #expect(configuration.effectiveAdvertisedHost == "127.0.0.1")
  }

  @Test func joinWithoutInitialCluster() throws {
    var flags = Self.required
    flags["initial-cluster"] = nil
    flags["join"] = "127.0.0.1:7002,127.0.0.1:8002"
    let configuration = try MetaServerConfiguration(values: Self.values(flags))
    #expect(configuration.initialCluster.isEmpty)
    #expect(configuration.join.count == 2)
  }

  @Test(arguments: [
    ("initial-cluster", "1=127.0.0.1:7000,1=127.0.0.1:7001", "listed twice"),
    (
      "initial-cluster", "1=127.0.0.1:7000,2=127.0.0.1:7000",
      "address 127.0.0.1:7000 is listed twice"
    ),
    ("initial-cluster", "1=127.0.0.1:0,2=127.0.0.1:7001", "port 0"),
    ("initial-cluster", "x=127.0.0.1:7000", "not a positive integer"),
    ("initial-cluster", "127.0.0.1:7000", "expected ID=HOST:PORT"),
    ("initial-cluster", "1=127.0.0.1:7000", "does not list this node"),
    ("node-id", "0", "outside 1..."),
    ("raft-listen", "nowhere", "bad value for --raft-listen"),
    ("raft-election-timeout-ms", "50", "at least twice"),
    ("join", "127.0.0.1:7002", "exclude each other"),
  ])
  func invalidValuesAreNamed(key: String, value: String, expected: String) {
    var flags = Self.required
    flags[key] = value
    let message = Self.message(flags)
    #expect(message?.contains(expected) == true, "\(key)=\(value): \(message ?? "accepted")")
  }

  @Test func missingRequiredSettingsAreNamed() {
    for key in ["node-id", "data-dir", "raft-listen", "api-listen", "http-listen"] {
      var flags = Self.required
      flags[key] = nil
      #expect(Self.message(flags)?.contains("--\(key) is required") == true, "\(key)")
    }
    var flags = Self.required
    flags["initial-cluster"] = nil
    #expect(Self.message(flags)?.contains("--initial-cluster") == true)
  }

  @Test func fileErrorsNameTheLine() {
    #expect(
      Self.message(Self.required, file: "# comment\n\ntick-interval-ms = fast\n")?.contains(
        "meta.conf:3") == true)
    #expect(
      throws: TransportError.self,
      performing: {
        _ = try ConfigValues(
          parsing: "snapshot = 1\n", path: "meta.conf",
          validKeys: MetaServerConfiguration.configKeys)
      })
  }
}

struct DeployConfigTests {
  @Test func theExampleConfigFileIsValid() throws {
    let path = URL(fileURLWithPath: #filePath)
      .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
      .appendingPathComponent("Deploy/metaserver.conf").path
    let values = try ConfigValues(
      contentsOfFile: path, validKeys: MetaServerConfiguration.configKeys)
    let configuration = try MetaServerConfiguration(values: values)
    #expect(configuration.nodeID == 1)
    #expect(configuration.initialCluster.count == 3)
    #expect(configuration.brokerSessionTimeoutMs == 1_500)
  }
}
