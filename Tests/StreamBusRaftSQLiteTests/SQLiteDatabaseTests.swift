import CSQLite3
import Foundation
import StreamBusSQLite
import Testing

@Suite struct SQLiteDatabaseTests {
  @Test func createInsertReadUpdateDelete() throws {
    let directory = try TemporaryDirectory()
    let database = try SQLiteDatabase(path: directory.path("crud.sqlite"))
    try database.execute(
      "CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL, weight REAL, payload BLOB)")

    let insert = try database.prepare(
      "INSERT INTO item (id, name, weight, payload) VALUES (?, ?, ?, ?)")
    for id in 1...3 {
      try insert.bind(Int64(id), at: 1)
      try insert.bind("item-\(id)", at: 2)
      try insert.bind(Double(id) * 1.5, at: 3)
      try insert.bind(blob: [UInt8(id), 0, 255], at: 4)
      try insert.run()
    }
    #expect(database.lastInsertRowID == 3)

    try database.run("UPDATE item SET name = ? WHERE id = ?", [.text("renamed"), .integer(2)])
    #expect(database.changes == 1)
    try database.run("DELETE FROM item WHERE id = ?", [.integer(3)])
    #expect(database.changes == 1)

    let select = try database.prepare("SELECT id, name, weight, payload FROM item ORDER BY id")
    var rows: [(Int64, String, Double, [UInt8])] = []
    while try select.step() {
      rows.append(
        (
          select.columnInt64(0), select.columnText(1), select.columnDouble(2),
          select.columnBlob(3)
        ))
    }
    #expect(rows.count == 2)
    #expect(
      rows[0].0 == 1 && rows[0].1 == "item-1" && rows[0].2 == 1.5 && rows[0].3 == [1, 0, 255])
    #expect(
      rows[1].0 == 2 && rows[1].1 == "renamed" && rows[1].2 == 3.0 && rows[1].3 == [2, 0, 255])
    #expect(select.columnName(1) == "name")

    // A statement runs again after it finished.
    var again = 0
    while try select.step() { again += 1 }
    #expect(again == 2)
  }

  @Test func valuesRoundTripWithTheirTypes() throws {
    let database = try SQLiteDatabase(
      path: ":memory:", configuration: .init(journalMode: .memory))
    try database.execute("CREATE TABLE cell (value)")
    let values: [SQLiteValue] = [
      .integer(Int64.min), .integer(Int64.max), .real(-0.25), .text(""), .text("grüße\u{0}tail"),
      .blob([]), .blob([0, 1, 2]), .null,
    ]
    for value in values {
      try database.run("INSERT INTO cell (value) VALUES (?)", [value])
    }
    let read = try database.query("SELECT value FROM cell ORDER BY rowid").map { $0[0] }
    #expect(read == values)
    let types = try database.prepare("SELECT value FROM cell ORDER BY rowid")
    var columnTypes: [SQLiteColumnType] = []
    while try types.step() { columnTypes.append(types.columnType(0)) }
    #expect(columnTypes == [.integer, .integer, .real, .text, .text, .blob, .blob, .null])
  }

  @Test func largeBlobsRoundTripAcrossReopen() throws {
    let directory = try TemporaryDirectory()
    let path = directory.path("blob.sqlite")
    var generator = SystemRandomNumberGenerator()
    let blobs = [0, 1, 4_095, 4_096, 1 << 18].map { count in
      (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }
    do {
      let database = try SQLiteDatabase(path: path)
      try database.execute("CREATE TABLE blob (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
      for (id, blob) in blobs.enumerated() {
        try database.run("INSERT INTO blob VALUES (?, ?)", [.integer(Int64(id)), .blob(blob)])
      }
      database.close()
    }
    let reopened = try SQLiteDatabase(path: path)
    let read = try reopened.query("SELECT data FROM blob ORDER BY id").map { $0[0] }
    #expect(read == blobs.map { .blob($0) })
  }

  @Test func transactionCommitsWhenBodyReturns() throws {
    let directory = try TemporaryDirectory()
    let database = try SQLiteDatabase(path: directory.path("tx.sqlite"))
    try database.execute("CREATE TABLE counter (value INTEGER NOT NULL)")
    let result = try database.transaction {
      try database.run("INSERT INTO counter VALUES (1)")
      #expect(database.isInTransaction)
      return 42
    }
    #expect(result == 42)
    #expect(!database.isInTransaction)
    #expect(try database.query("SELECT count(*) FROM counter") == [[.integer(1)]])
  }

  struct BodyFailure: Error {}

  @Test func transactionRollsBackWhenBodyThrows() throws {
    let directory = try TemporaryDirectory()
    let path = directory.path("rollback.sqlite")
    let database = try SQLiteDatabase(path: path)
    try database.execute("CREATE TABLE counter (value INTEGER NOT NULL)")
    try database.run("INSERT INTO counter VALUES (1)")
    #expect(throws: BodyFailure.self) {
      try database.transaction {
        try database.run("INSERT INTO counter VALUES (2)")
        try database.run("UPDATE counter SET value = 100")
        throw BodyFailure()
      }
    }
    #expect(!database.isInTransaction)
    #expect(try database.query("SELECT value FROM counter") == [[.integer(1)]])

    // A failing statement inside the body rolls back the earlier statements too.
    let error = #expect(throws: SQLiteError.self) {
      try database.transaction {
        try database.run("INSERT INTO counter VALUES (3)")
        try database.run("INSERT INTO counter VALUES (NULL)")
      }
    }
    #expect(error?.isConstraintViolation == true)
    #expect(try database.query("SELECT value FROM counter") == [[.integer(1)]])

    // What another connection sees after reopening is the committed state only.
    database.close()
    let reopened = try SQLiteDatabase(path: path)
    #expect(try reopened.query("SELECT value FROM counter") == [[.integer(1)]])
  }

  @Test func errorsCarryCodeMessageAndSQL() throws {
    let database = try SQLiteDatabase(
      path: ":memory:", configuration: .init(journalMode: .memory))
    let syntax = #expect(throws: SQLiteError.self) {
      try database.execute("SELEC 1")
    }
    #expect(syntax?.code == SQLITE_ERROR)
    #expect(syntax?.message.contains("syntax error") == true)
    #expect(syntax?.sql == "SELEC 1")
    #expect(syntax?.description.contains("SELEC 1") == true)

    let missing = #expect(throws: SQLiteError.self) {
      _ = try database.prepare("SELECT * FROM nowhere")
    }
    #expect(missing?.message.contains("no such table: nowhere") == true)

    try database.execute("CREATE TABLE unique_name (name TEXT UNIQUE)")
    try database.run("INSERT INTO unique_name VALUES ('a')")
    let duplicate = #expect(throws: SQLiteError.self) {
      try database.run("INSERT INTO unique_name VALUES ('a')")
    }
    #expect(duplicate?.code == SQLITE_CONSTRAINT)
    #expect(duplicate?.extendedCode == SQLITE_CONSTRAINT | (8 << 8))  // SQLITE_CONSTRAINT_UNIQUE
    #expect(duplicate?.message.contains("UNIQUE constraint failed") == true)

    let range = #expect(throws: SQLiteError.self) {
      try database.prepare("SELECT ?").bind(1, at: 2)
    }
    #expect(range?.code == SQLITE_RANGE)

    #expect(throws: SQLiteError.self) {
      _ = try database.prepare("SELECT 1; SELECT 2")
    }
  }

  @Test func foreignKeysAreEnforced() throws {
    let database = try SQLiteDatabase(
      path: ":memory:", configuration: .init(journalMode: .memory))
    try database.execute(
      """
      CREATE TABLE parent (id INTEGER PRIMARY KEY);
      CREATE TABLE child (parent_id INTEGER NOT NULL REFERENCES parent(id));
      """)
    let error = #expect(throws: SQLiteError.self) {
      try database.run("INSERT INTO child VALUES (7)")
    }
    #expect(error?.extendedCode == SQLITE_CONSTRAINT | (3 << 8))  // SQLITE_CONSTRAINT_FOREIGNKEY
  }

  @Test func durablePragmasAreInEffect() throws {
    let directory = try TemporaryDirectory()
    let database = try SQLiteDatabase(path: directory.path("pragmas.sqlite"))
    #expect(try database.pragmaText("journal_mode") == "wal")
    #expect(try database.pragmaInteger("synchronous") == 2)
    #expect(try database.pragmaInteger("foreign_keys") == 1)
    #expect(try database.pragmaInteger("busy_timeout") == 5_000)
    try database.execute("CREATE TABLE t (x)")
    #expect(FileManager.default.fileExists(atPath: directory.path("pragmas.sqlite-wal")))

    try database.setPragma("user_version", "7")
    #expect(try database.pragmaInteger("user_version") == 7)
  }

  @Test func journalModeThatCannotBeHonouredFailsOpen() throws {
    // An in-memory database cannot use WAL: asking for it must fail, not silently degrade.
    let error = #expect(throws: SQLiteError.self) {
      _ = try SQLiteDatabase(path: ":memory:", configuration: .durable)
    }
    #expect(error?.message.contains("journal_mode is memory") == true)
  }

  @Test func openFailuresAreClear() throws {
    let directory = try TemporaryDirectory()
    let missing = directory.path("absent/child.sqlite")
    let error = #expect(throws: SQLiteError.self) {
      _ = try SQLiteDatabase(path: missing)
    }
    #expect(error?.code == SQLITE_CANTOPEN)
    #expect(error?.message.contains(missing) == true)

    let notCreated = #expect(throws: SQLiteError.self) {
      _ = try SQLiteDatabase(path: directory.path("new.sqlite"), flags: [.readWrite])
    }
    #expect(notCreated?.code == SQLITE_CANTOPEN)

    let garbage = directory.path("garbage.sqlite")
    try Data(repeating: 0x5a, count: 8_192).write(to: URL(fileURLWithPath: garbage))
    let notDatabase = #expect(throws: SQLiteError.self) {
      _ = try SQLiteDatabase(path: garbage)
    }
    #expect(notDatabase?.code == SQLITE_NOTADB)
    #expect(notDatabase?.isCorrupt == true)
  }

  @Test func closedDatabaseRefusesWork() throws {
    let database = try SQLiteDatabase(
      path: ":memory:", configuration: .init(journalMode: .memory))
    let statement = try database.prepare("SELECT 1")
    database.close()
    database.close()
    #expect(!database.isOpen)
    let error = #expect(throws: SQLiteError.self) { _ = try statement.step() }
    #expect(error?.code == SQLITE_MISUSE)
    #expect(throws: SQLiteError.self) { try database.execute("SELECT 1") }
  }

  @Test func secondConnectionSeesOnlyCommittedData() throws {
    let directory = try TemporaryDirectory()
    let path = directory.path("shared.sqlite")
    let writer = try SQLiteDatabase(path: path)
    try writer.execute("CREATE TABLE t (x INTEGER)")
    let reader = try SQLiteDatabase(path: path)
    #expect(throws: BodyFailure.self) {
      try writer.transaction {
        try writer.run("INSERT INTO t VALUES (1)")
        #expect(try reader.query("SELECT count(*) FROM t") == [[.integer(0)]])
        throw BodyFailure()
      }
    }
    try writer.transaction { try writer.run("INSERT INTO t VALUES (2)") }
    #expect(try reader.query("SELECT x FROM t") == [[.integer(2)]])
  }

  @Test func busyWriterFailsAfterTimeout() throws {
    let directory = try TemporaryDirectory()
    let path = directory.path("busy.sqlite")
    let first = try SQLiteDatabase(path: path)
    try first.execute("CREATE TABLE t (x INTEGER)")
    let second = try SQLiteDatabase(path: path, configuration: .init(busyTimeoutMs: 20))
    try first.transaction {
      let error = #expect(throws: SQLiteError.self) {
        try second.transaction { try second.run("INSERT INTO t VALUES (1)") }
      }
      #expect(error?.isBusy == true)
    }
  }
}
