"""The SQL schema of the last release before migrations (commit 5e9c47a), as that
release's code created it (``metadata.create_all`` of its registry and app database),
per dialect: the starting point of the upgrade tests. Generated once from that code;
never edit by hand."""

RELEASE_0 = {
    "sqlite": [
        "CREATE TABLE collections (\n\tname VARCHAR(255) NOT NULL, \n\tactive VARCHAR(255) NOT NULL, \n\tprevious VARCHAR(255), \n\tswitched_at FLOAT NOT NULL, \n\tPRIMARY KEY (name)\n)",
        "CREATE TABLE documents (\n\tdoc_id VARCHAR(64) NOT NULL, \n\tsource TEXT NOT NULL, \n\ttitle TEXT NOT NULL, \n\tcontent_hash VARCHAR(64) NOT NULL, \n\tmodified_at FLOAT NOT NULL, \n\tmime_type VARCHAR(128) NOT NULL, \n\tsize_bytes INTEGER NOT NULL, \n\tgroups TEXT NOT NULL, \n\ttags TEXT NOT NULL, \n\tchunks INTEGER NOT NULL, \n\tingested_at FLOAT NOT NULL, \n\tPRIMARY KEY (doc_id), \n\tUNIQUE (source)\n)",
        "CREATE TABLE api_keys (\n\tid VARCHAR(12) NOT NULL, \n\tsecret_sha256 VARCHAR(64) NOT NULL, \n\trole VARCHAR(16) NOT NULL, \n\tgroups TEXT NOT NULL, \n\tname TEXT NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\trevoked_at FLOAT, \n\tPRIMARY KEY (id)\n)",
        "CREATE TABLE audit (\n\tseq INTEGER NOT NULL, \n\tid VARCHAR(32) NOT NULL, \n\ttime FLOAT NOT NULL, \n\tkind VARCHAR(16) NOT NULL, \n\tkey_id VARCHAR(64) NOT NULL, \n\tquestion TEXT NOT NULL, \n\tchunk_ids TEXT NOT NULL, \n\tmodel TEXT NOT NULL, \n\tanswer TEXT NOT NULL, \n\tlatency_ms FLOAT NOT NULL, \n\tprompt_tokens INTEGER NOT NULL, \n\tcompletion_tokens INTEGER NOT NULL, \n\tstatus VARCHAR(32) NOT NULL, \n\trequest_id VARCHAR(128) NOT NULL, \n\tconversation_id VARCHAR(64), \n\tdetails TEXT, \n\tPRIMARY KEY (seq), \n\tUNIQUE (id)\n)",
        "CREATE INDEX ix_audit_time ON audit (time)",
        "CREATE TABLE conversations (\n\tseq INTEGER NOT NULL, \n\tconversation_id VARCHAR(64) NOT NULL, \n\tkey_id VARCHAR(64) NOT NULL, \n\tquestion TEXT NOT NULL, \n\tanswer TEXT NOT NULL, \n\ttime FLOAT NOT NULL, \n\tanswer_id VARCHAR(32), \n\tcitations TEXT, \n\tPRIMARY KEY (seq)\n)",
        "CREATE INDEX ix_conversations_conversation_id_seq ON conversations (conversation_id, seq)",
        "CREATE TABLE feedback (\n\tanswer_id VARCHAR(32) NOT NULL, \n\tkey_id VARCHAR(64) NOT NULL, \n\trating VARCHAR(8) NOT NULL, \n\tcomment TEXT NOT NULL, \n\ttime FLOAT NOT NULL, \n\tPRIMARY KEY (answer_id)\n)",
        "CREATE TABLE jobs (\n\tid VARCHAR(32) NOT NULL, \n\tkey_id VARCHAR(64) NOT NULL, \n\tstatus VARCHAR(16) NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\tupdated_at FLOAT NOT NULL, \n\ttotal_files INTEGER NOT NULL, \n\tdone_files INTEGER NOT NULL, \n\tchunks INTEGER NOT NULL, \n\tresults TEXT NOT NULL, \n\terror TEXT, \n\tPRIMARY KEY (id)\n)",
        "CREATE INDEX ix_jobs_created_at ON jobs (created_at)",
    ],
    "postgresql": [
        "CREATE TABLE collections (\n\tname VARCHAR(255) NOT NULL, \n\tactive VARCHAR(255) NOT NULL, \n\tprevious VARCHAR(255), \n\tswitched_at FLOAT NOT NULL, \n\tPRIMARY KEY (name)\n)",
        "CREATE TABLE documents (\n\tdoc_id VARCHAR(64) NOT NULL, \n\tsource TEXT NOT NULL, \n\ttitle TEXT NOT NULL, \n\tcontent_hash VARCHAR(64) NOT NULL, \n\tmodified_at FLOAT NOT NULL, \n\tmime_type VARCHAR(128) NOT NULL, \n\tsize_bytes INTEGER NOT NULL, \n\tgroups TEXT NOT NULL, \n\ttags TEXT NOT NULL, \n\tchunks INTEGER NOT NULL, \n\tingested_at FLOAT NOT NULL, \n\tPRIMARY KEY (doc_id), \n\tUNIQUE (source)\n)",
        "CREATE TABLE api_keys (\n\tid VARCHAR(12) NOT NULL, \n\tsecret_sha256 VARCHAR(64) NOT NULL, \n\trole VARCHAR(16) NOT NULL, \n\tgroups TEXT NOT NULL, \n\tname TEXT NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\trevoked_at FLOAT, \n\tPRIMARY KEY (id)\n)",
        "CREATE TABLE audit (\n\tseq SERIAL NOT NULL, \n\tid VARCHAR(32) NOT NULL, \n\ttime FLOAT NOT NULL, \n\tkind VARCHAR(16) NOT NULL, \n\tkey_id VARCHAR(64) NOT NULL, \n\tquestion TEXT NOT NULL, \n\tchunk_ids TEXT NOT NULL, \n\tmodel TEXT NOT NULL, \n\tanswer TEXT NOT NULL, \n\tlatency_ms FLOAT NOT NULL, \n\tprompt_tokens INTEGER NOT NULL, \n\tcompletion_tokens INTEGER NOT NULL, \n\tstatus VARCHAR(32) NOT NULL, \n\trequest_id VARCHAR(128) NOT NULL, \n\tconversation_id VARCHAR(64), \n\tdetails TEXT, \n\tPRIMARY KEY (seq), \n\tUNIQUE (id)\n)",
        "CREATE INDEX ix_audit_time ON audit (time)",
        "CREATE TABLE conversations (\n\tseq SERIAL NOT NULL, \n\tconversation_id VARCHAR(64) NOT NULL, \n\tkey_id VARCHAR(64) NOT NULL, \n\tquestion TEXT NOT NULL, \n\tanswer TEXT NOT NULL, \n\ttime FLOAT NOT NULL, \n\tanswer_id VARCHAR(32), \n\tcitations TEXT, \n\tPRIMARY KEY (seq)\n)",
        "CREATE INDEX ix_conversations_conversation_id_seq ON conversations (conversation_id, seq)",
        "CREATE TABLE feedback (\n\tanswer_id VARCHAR(32) NOT NULL, \n\tkey_id VARCHAR(64) NOT NULL, \n\trating VARCHAR(8) NOT NULL, \n\tcomment TEXT NOT NULL, \n\ttime FLOAT NOT NULL, \n\tPRIMARY KEY (answer_id)\n)",
        "CREATE TABLE jobs (\n\tid VARCHAR(32) NOT NULL, \n\tkey_id VARCHAR(64) NOT NULL, \n\tstatus VARCHAR(16) NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\tupdated_at FLOAT NOT NULL, \n\ttotal_files INTEGER NOT NULL, \n\tdone_files INTEGER NOT NULL, \n\tchunks INTEGER NOT NULL, \n\tresults TEXT NOT NULL, \n\terror TEXT, \n\tPRIMARY KEY (id)\n)",
        "CREATE INDEX ix_jobs_created_at ON jobs (created_at)",
    ],
}
