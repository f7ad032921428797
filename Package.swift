// swift-tools-version: 6.0
import PackageDescription

// Module boundaries follow docs/ARCHITECTURE.md: codecs, storage and the Raft core are
// pure libraries (no threads of their own); processes are thin executables over them.
let package = Package(
  name: "StreamBus",
  platforms: [.macOS(.v14)],
  products: [
    .library(name: "StreamBusRecords", targets: ["StreamBusRecords"]),
    .library(name: "StreamBusStorage", targets: ["StreamBusStorage"]),
    .library(name: "StreamBusProtocol", targets: ["StreamBusProtocol"]),
    .library(name: "StreamBusRaft", targets: ["StreamBusRaft"]),
    .library(name: "StreamBusTransport", targets: ["StreamBusTransport"]),
    .library(name: "StreamBusClient", targets: ["StreamBusClient"]),
    .library(name: "StreamBusMetadata", targets: ["StreamBusMetadata"]),
    .executable(name: "sbctl", targets: ["sbctl"]),
    .library(name: "StreamBusBroker", targets: ["StreamBusBroker"]),
    .executable(name: "raft-sim", targets: ["raft-sim"]),
    .executable(name: "databroker", targets: ["databroker"]),
    .executable(name: "sbbench", targets: ["sbbench"]),
    .library(name: "StreamBusMetaServer", targets: ["StreamBusMetaServer"]),
    .executable(name: "metaserver", targets: ["metaserver"]),
    .library(name: "StreamBusMetaProtocol", targets: ["StreamBusMetaProtocol"]),
    .library(name: "StreamBusMetaClient", targets: ["StreamBusMetaClient"]),
    .library(name: "StreamBusVerification", targets: ["StreamBusVerification"]),
    .library(name: "StreamBusWorkload", targets: ["StreamBusWorkload"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
    .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
    .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
    .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
    .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
  ],
  targets: [
    // CRC-32C with the SSE4.2 instruction where the CPU has it, software otherwise.
    // Optimized even in debug builds: at -O0 the checksum runs at a fifth of its speed and
    // every produced and recovered byte goes through it.
    .target(name: "CStreamBusCRC32C", cSettings: [.unsafeFlags(["-O2"])]),
    .target(name: "StreamBusRecords", dependencies: ["CStreamBusCRC32C"]),
    .target(name: "StreamBusStorage", dependencies: ["StreamBusRecords"]),
    .target(name: "StreamBusProtocol"),

    // Length-prefixed framing over TCP for every StreamBus process and client.
    .target(
      name: "StreamBusTransport",
      dependencies: [
        .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ]),

    // Client library (admin, producer, consumer) and the command-line tool over it.
    .target(
      name: "StreamBusClient",
      dependencies: [
        "StreamBusProtocol", "StreamBusRecords", "StreamBusTransport",
        .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
      ]),
    .executableTarget(
      name: "sbctl",
      dependencies: [
        "StreamBusClient", "StreamBusMetaClient", "StreamBusProtocol", "StreamBusTransport",
        "StreamBusSpawn", "StreamBusVerification", "StreamBusWorkload",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
      ]),

    // The data broker: partition replicas over StreamBusStorage, served by StreamBusTransport.
    .target(
      name: "StreamBusBroker",
      dependencies: [
        "StreamBusProtocol", "StreamBusRecords", "StreamBusStorage", "StreamBusTransport",
        "StreamBusMetaClient", "StreamBusMetaProtocol", "StreamBusMetadata",
        .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ]),
    .executableTarget(
      name: "databroker",
      dependencies: [
        "StreamBusBroker", "StreamBusTransport",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ]),

    // Raft: pure core, SQLite persistence, deterministic simulator.
    .target(name: "StreamBusRaft"),
    .systemLibrary(
      name: "CSQLite3", pkgConfig: "sqlite3",
      providers: [.apt(["libsqlite3-dev"])]),
    .target(name: "StreamBusSQLite", dependencies: ["CSQLite3"]),
    .target(name: "StreamBusRaftSQLite", dependencies: ["StreamBusRaft", "StreamBusSQLite"]),
    .target(name: "StreamBusRaftSimulation", dependencies: ["StreamBusRaft"]),
    .executableTarget(
      name: "raft-sim",
      dependencies: [
        "StreamBusRaftSimulation",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]),
    // One metaserver's Raft node made real: driver thread, SQLite, TCP peer transport.
    .target(
      name: "StreamBusRaftHost",
      dependencies: [
        "StreamBusRaft", "StreamBusRaftSQLite", "StreamBusTransport",
        .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
      ]),
    .executableTarget(
      name: "raft-bench",
      dependencies: [
        "StreamBusRaftSQLite",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Histogram", package: "hdrhistogram-swift"),
      ]),

    // The metaserver: Raft-replicated metadata image, controller, API and HTTP endpoints.
    .target(
      name: "StreamBusMetaServer",
      dependencies: [
        "StreamBusProtocol", "StreamBusTransport", "StreamBusMetadata", "StreamBusMetaProtocol",
        "StreamBusRaft", "StreamBusRaftHost",
        .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Metrics", package: "swift-metrics"),
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ]),
    .executableTarget(
      name: "metaserver",
      dependencies: [
        "StreamBusMetaServer", "StreamBusTransport",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Metrics", package: "swift-metrics"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ]),
    .testTarget(
      name: "StreamBusMetaServerTests",
      dependencies: [
        "StreamBusMetaServer", "StreamBusTransport", "StreamBusTestSupport", "StreamBusMetadata",
        "StreamBusMetaProtocol", "StreamBusMetaClient", "StreamBusRaft", "StreamBusRaftHost",
        "StreamBusProtocol",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
      ]),
    // Metaserver metadata: records, image, snapshot codec and the pure controller.
    .target(name: "StreamBusMetadata", dependencies: ["StreamBusProtocol"]),
    .testTarget(name: "StreamBusMetadataTests", dependencies: ["StreamBusMetadata"]),
    // Metaserver API: wire codec (pure) and the client that follows the Raft leader.
    .target(name: "StreamBusMetaProtocol", dependencies: ["StreamBusProtocol"]),
    .target(
      name: "StreamBusMetaClient",
      dependencies: [
        "StreamBusMetaProtocol", "StreamBusProtocol", "StreamBusTransport",
        .product(name: "Logging", package: "swift-log"),
      ]),
    .testTarget(
      name: "StreamBusMetaProtocolTests",
      dependencies: ["StreamBusMetaProtocol", "StreamBusProtocol"]),
    .testTarget(
      name: "StreamBusMetaClientTests",
      dependencies: [
        "StreamBusMetaClient", "StreamBusMetaProtocol", "StreamBusProtocol", "StreamBusTransport",
        "sbctl",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
      ]),

    .testTarget(name: "StreamBusRecordsTests", dependencies: ["StreamBusRecords"]),
    .testTarget(name: "StreamBusStorageTests", dependencies: ["StreamBusStorage"]),
    .testTarget(name: "StreamBusProtocolTests", dependencies: ["StreamBusProtocol"]),
    .testTarget(
      name: "StreamBusTransportTests",
      dependencies: [
        "StreamBusTransport",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOEmbedded", package: "swift-nio"),
        .product(name: "NIOTestUtils", package: "swift-nio"),
      ]),
    .testTarget(
      name: "StreamBusClientTests",
      dependencies: [
        "StreamBusClient", "sbctl", "StreamBusProtocol", "StreamBusRecords", "StreamBusTransport",
        "StreamBusBroker", "StreamBusStorage",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
      ]),
    .testTarget(
      name: "StreamBusBrokerTests",
      dependencies: [
        "StreamBusBroker", "StreamBusProtocol", "StreamBusRecords", "StreamBusStorage",
        "StreamBusTransport",
        .product(name: "Logging", package: "swift-log"),
      ]),
    .testTarget(
      name: "StreamBusRaftTests",
      dependencies: ["StreamBusRaft", "StreamBusRaftSimulation"]),
    .testTarget(
      name: "StreamBusRaftSQLiteTests",
      dependencies: ["StreamBusRaftSQLite", "StreamBusSQLite"]),
    .testTarget(
      name: "StreamBusRaftHostTests",
      dependencies: [
        "StreamBusRaftHost", "StreamBusRaft", "StreamBusRaftSQLite", "StreamBusTransport",
        .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
      ]),

    // Real-process testing and benchmarking: launcher for built executables, the
    // integration tests that drive databroker and sbctl, and the benchmark tool.
    .target(
      name: "StreamBusTestSupport",
      dependencies: [
        "StreamBusProtocol", "StreamBusRecords", "StreamBusTransport", "StreamBusSpawn",
        .product(name: "Logging", package: "swift-log"),
      ]),
    .executableTarget(
      name: "sbbench",
      dependencies: [
        "StreamBusTestSupport", "StreamBusClient", "StreamBusProtocol", "StreamBusRecords",
        "StreamBusTransport", "StreamBusMetaClient", "StreamBusMetaProtocol",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Histogram", package: "hdrhistogram-swift"),
        .product(name: "Logging", package: "swift-log"),
      ]),
    .testTarget(
      name: "StreamBusIntegrationTests",
      dependencies: [
        "StreamBusTestSupport", "StreamBusClient", "StreamBusProtocol", "StreamBusRecords",
        "StreamBusTransport", "StreamBusMetaClient", "StreamBusMetaProtocol",
        "StreamBusVerification", "StreamBusWorkload", "StreamBusSpawn",
        .product(name: "Logging", package: "swift-log"),
      ]),

    // Correctness checking of real runs: a history of sends, acks and reads with a checker
    // (pure), and the client-driven workload that records one.
    .target(name: "StreamBusVerification"),

    // Child processes started with posix_spawn and reaped by pid (sbctl local, test harness).
    .target(name: "CStreamBusSpawn"),
    .target(name: "StreamBusSpawn", dependencies: ["CStreamBusSpawn"]),
    .target(name: "StreamBusWorkload", dependencies: ["StreamBusVerification", "StreamBusClient"]),
    .testTarget(name: "StreamBusVerificationTests", dependencies: ["StreamBusVerification"]),
    // Chaos suite: real network and process faults on clusters in network namespaces
    // (NetworkLab); needs root, skipped with the reason otherwise.
    .testTarget(
      name: "StreamBusChaosTests", dependencies: ["StreamBusTestSupport", "StreamBusVerification"]),
  ]
)
