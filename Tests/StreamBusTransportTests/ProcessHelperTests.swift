import Logging
import Testing

@testable import StreamBusTransport

@Suite struct HostPortTests {
  @Test(arguments: [
    ("localhost:9092", "localhost", 9092),
    ("127.0.0.1:0", "127.0.0.1", 0),
    ("[::1]:9092", "::1", 9092),
    ("[fe80::1%eth0]:1", "fe80::1%eth0", 1),
    ("  broker-1.example.com:65535 ", "broker-1.example.com", 65535),
  ])
  func parsesValidAddresses(text: String, host: String, port: Int) throws {
    let address = try HostPort(parsing: text)
    #expect(address.host == host)
    #expect(address.port == port)
  }

  @Test(arguments: [
    ("localhost", "expected host:port"),
    ("localhost:", "empty port"),
    (":9092", "empty host"),
    ("host:http", "not a number"),
    ("host:-1", "not a number"),
    ("host:65536", "outside 0...65535"),
    ("::1:9092", "must be in brackets"),
    ("[::1]9092", "expected \":port\""),
    ("[::1:9092", "missing \"]\""),
    ("[localhost]:1", "only for IPv6"),
    ("a b:1", "not allowed"),
    ("", "expected host:port"),
  ])
  func rejectsInvalidAddresses(text: String, reason: String) {
    let error = #expect(throws: TransportError.self) {
      try HostPort(parsing: text)
    }
    #expect(error?.code == .invalidAddress)
    #expect(error?.message.contains(reason) == true, "\(String(describing: error))")
  }

  @Test func descriptionRoundTrips() throws {
    for text in ["[::1]:9092", "example.org:1", "10.0.0.1:80"] {
      #expect(try HostPort(parsing: text).description == text)
    }
  }
}

@Suite struct ConfigValuesTests {
  private let keys = ["listen", "data-dir", "segment-bytes", "fsync", "metaservers"]

  @Test func parsesKeysCommentsAndBlankLines() throws {
    let text = """
      # broker settings
      listen = 0.0.0.0:9092

        data-dir=/var/lib/streambus   # trailing comment
      segment-bytes = 1048576
      fsync = yes
      metaservers = a:1,[::1]:2
      """
    let values = try ConfigValues(parsing: text, path: "broker.conf", validKeys: keys)
    #expect(try values.hostPort("listen", default: HostPort(host: "x", port: 1)).port == 9092)
    #expect(values.string("data-dir") == "/var/lib/streambus")
    #expect(try values.int("segment-bytes", default: 0) == 1_048_576)
    #expect(try values.bool("fsync", default: false))
    #expect(
      try values.hostPorts("metaservers", default: []).map(\.description) == ["a:1", "[::1]:2"])
    #expect(values.origin(of: "segment-bytes") == .file(path: "broker.conf", line: 5))
  }

  @Test func unsetKeysFallBackToDefaults() throws {
    let values = try ConfigValues(parsing: "", path: "empty.conf", validKeys: keys)
    #expect(try values.int("segment-bytes", default: 42) == 42)
    #expect(values.string("data-dir", default: "/tmp") == "/tmp")
  }

  @Test func unknownKeyListsValidKeys() {
    let error = #expect(throws: TransportError.self) {
      try ConfigValues(parsing: "# x\nlisten = a:1\nport = 1\n", path: "b.conf", validKeys: keys)
    }
    #expect(error?.code == .invalidConfiguration)
    #expect(error?.message.contains("b.conf:3") == true)
    #expect(error?.message.contains("unknown key \"port\"") == true)
    #expect(
      error?.message.contains("data-dir, fsync, listen, metaservers, segment-bytes") == true)
  }

  @Test(arguments: [
    ("listen 0.0.0.0:1", "expected \"key = value\""),
    ("= 5", "missing key"),
    ("fsync =", "has no value"),
    ("fsync = yes\nfsync = no", "already set at c.conf:1"),
  ])
  func malformedLinesAreRejected(text: String, reason: String) {
    let error = #expect(throws: TransportError.self) {
      try ConfigValues(parsing: text, path: "c.conf", validKeys: keys)
    }
    #expect(error?.message.contains(reason) == true, "\(String(describing: error))")
  }

  @Test func badValuesNameKeyAndLine() throws {
    let values = try ConfigValues(
      parsing: "\nsegment-bytes = 12kb\nfsync = maybe\nlisten = nowhere\n", path: "d.conf",
      validKeys: keys)
    let intError = #expect(throws: TransportError.self) {
      try values.int("segment-bytes", default: 0)
    }
    #expect(
      intError?.message == "d.conf:2: bad value for \"segment-bytes\": \"12kb\" is not an integer")
    let boolError = #expect(throws: TransportError.self) {
      try values.bool("fsync", default: false)
    }
    #expect(boolError?.message.hasPrefix("d.conf:3: bad value for \"fsync\"") == true)
    let addressError = #expect(throws: TransportError.self) {
      try values.hostPort("listen", default: HostPort(host: "x", port: 1))
    }
    #expect(addressError?.message.hasPrefix("d.conf:4: bad value for \"listen\"") == true)
  }

  @Test func rangeIsChecked() throws {
    let values = try ConfigValues(parsing: "segment-bytes = 0", path: "e.conf", validKeys: keys)
    let error = #expect(throws: TransportError.self) {
      try values.int("segment-bytes", default: 1, range: 1...100)
    }
    #expect(error?.message.contains("outside 1...100") == true)
  }

  @Test func flagsOverrideFileValues() throws {
    let file = try ConfigValues(
      parsing: "segment-bytes = 10\ndata-dir = /a", path: "f.conf", validKeys: keys)
    let merged = file.merging(flags: ["segment-bytes": "20", "data-dir": nil])
    #expect(try merged.int("segment-bytes", default: 0) == 20)
    #expect(merged.origin(of: "segment-bytes") == .flag)
    #expect(merged.string("data-dir") == "/a")
    let bad = file.merging(flags: ["segment-bytes": "x"])
    let error = #expect(throws: TransportError.self) {
      try bad.int("segment-bytes", default: 0)
    }
    #expect(error?.message.hasPrefix("bad value for --segment-bytes") == true)
  }

  @Test func loadsFromDisk() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let path = directory.path + "/broker.conf"
    try directory.write("fsync = off\n", to: path)
    let values = try ConfigValues(contentsOfFile: path, validKeys: keys)
    #expect(try values.bool("fsync", default: true) == false)
    let error = #expect(throws: TransportError.self) {
      try ConfigValues(contentsOfFile: directory.path + "/missing.conf", validKeys: keys)
    }
    #expect(error?.message.contains("cannot read config file") == true)
  }
}

@Suite struct ProcessLoggingTests {
  @Test func parsesLevels() throws {
    #expect(try ProcessLogging.parseLevel("info") == .info)
    #expect(try ProcessLogging.parseLevel("WARN") == .warning)
    #expect(try ProcessLogging.parseLevel(" Debug ") == .debug)
    let error = #expect(throws: TransportError.self) {
      try ProcessLogging.parseLevel("loud")
    }
    #expect(error?.message.contains("trace, debug, info, notice, warning, error, critical") == true)
  }

  @Test func handlerCarriesLevelAndProcessName() {
    let handler = ProcessLogging.makeHandler(
      label: "transport", processName: "databroker", level: .notice)
    #expect(handler.logLevel == .notice)
    #expect(handler.metadata["process"] == "databroker")
  }
}
