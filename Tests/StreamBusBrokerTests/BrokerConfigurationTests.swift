import Foundation
import StreamBusBroker
import StreamBusStorage
import StreamBusTransport
import Testing

@Suite struct BrokerConfigurationTests {
  let keys = BrokerConfiguration.configKeys

  @Test func defaultsFromTheMinimalSettings() throws {
    let values = ConfigValues(validKeys: keys).merging(flags: [
      "standalone": "true", "data-dir": "/data",
    ])
    let configuration = try BrokerConfiguration(values: values)
    #expect(configuration.dataDirectory == "/data")
    #expect(configuration.listen == HostPort(host: "0.0.0.0", port: 9092))
    #expect(configuration.effectiveAdvertisedHost == "127.0.0.1")
    #expect(configuration.flushPolicy == .groupCommit)
    #expect(configuration.inflightRequestsMax == 64)
    #expect(configuration.messageBytesMax == 1 << 20)
    #expect(configuration.topicDefaults.retentionMs == 604_800_000)
    #expect(configuration.topicDefaults.retentionBytes == nil)
    #expect(configuration.readyFile == nil)
  }

  @Test func flagsOverrideTheFile() throws {
    let file = try ConfigValues(
      parsing: """
        standalone = true
        data-dir = /from-file
        listen = 127.0.0.1:9000
        retention-ms = -1
        retention-bytes = 5000
        flush-interval-ms = 250
        advertised-host = broker.example
        """, path: "broker.conf", validKeys: keys)
    let values = file.merging(flags: ["data-dir": "/from-flag", "listen": nil])
    let configuration = try BrokerConfiguration(values: values)
    #expect(configuration.dataDirectory == "/from-flag")
    #expect(configuration.listen == HostPort(host: "127.0.0.1", port: 9000))
    #expect(configuration.topicDefaults.retentionMs == nil)
    #expect(configuration.topicDefaults.retentionBytes == 5000)
    #expect(configuration.flushPolicy == .interval(ms: 250))
    #expect(configuration.effectiveAdvertisedHost == "broker.example")
  }

  @Test func badSettingsNameTheKeyAndOrigin() throws {
    func failure(_ flags: [String: String?]) -> String {
      let values = ConfigValues(validKeys: keys).merging(flags: flags)
      do {
        _ = try BrokerConfiguration(values: values)
        return "no error"
      } catch {
        return "\(error)"
      }
    }
    #expect(failure(["data-dir": "/d"]).contains("--standalone"))
    #expect(failure(["standalone": "true"]).contains("--data-dir"))
    #expect(
      failure(["standalone": "true", "data-dir": "/d", "segment-bytes": "10"]).contains(
        "--segment-bytes"))
    #expect(
      failure(["standalone": "true", "data-dir": "/d", "listen": "nowhere"]).contains("--listen"))
    #expect(
      failure(["standalone": "true", "data-dir": "/d", "inflight-requests-max": "0"]).contains(
        "--inflight-requests-max"))
  }
}

/// The example config files in Deploy/ are what operators copy: they must load as they are.
struct DeployBrokerConfigTests {
  private func deployFile(_ name: String) -> String {
    URL(fileURLWithPath: #filePath)
      .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
      .appendingPathComponent("Deploy/\(name)").path
  }

  @Test func theStandaloneExampleIsValid() throws {
    let values = try ConfigValues(
      contentsOfFile: deployFile("databroker.conf"), validKeys: BrokerConfiguration.configKeys)
    let configuration = try BrokerConfiguration(values: values)
    #expect(configuration.cluster == nil)
  }

  @Test func theClusterExampleIsValid() throws {
    let values = try ConfigValues(
      contentsOfFile: deployFile("databroker-cluster.conf"),
      validKeys: BrokerConfiguration.configKeys)
    let configuration = try BrokerConfiguration(values: values)
    let cluster = try #require(configuration.cluster)
    #expect(cluster.metaservers.count == 3)
    #expect(cluster.brokerID == 1)
    #expect(cluster.replicaLagTimeMaxMs == 2_000)
    #expect(cluster.brokerSessionTimeoutMs == 1_500)
  }
}
