-- The control plane's database as released at commit d058584 (before Alembic): SQLite.
-- Made by that commit's code -- Store(url), Ledger(store).install(), issue_token() for two tenants and the
-- operator, seven jobs added and ended through Store.update_job (so the ledger hook folded them) -- then dumped
-- with sqlite3's iterdump(). tests/control_plane/test_migrations.py loads it and upgrades it to head.
BEGIN TRANSACTION;
CREATE TABLE jobs (
	id VARCHAR(40) NOT NULL, 
	tenant VARCHAR(64) NOT NULL, 
	region VARCHAR(32) NOT NULL, 
	name VARCHAR(64) NOT NULL, 
	experiment VARCHAR(160) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	entrypoint TEXT NOT NULL, 
	template VARCHAR(64), 
	spec JSON NOT NULL, 
	cpus FLOAT NOT NULL, 
	gpus INTEGER NOT NULL, 
	gpu_model VARCHAR(32), 
	memory_bytes BIGINT NOT NULL, 
	submitted_at FLOAT NOT NULL, 
	started_at FLOAT, 
	ended_at FLOAT, 
	last_seen_at FLOAT, 
	dispatched BOOLEAN NOT NULL, 
	backend_ref VARCHAR(80), 
	message TEXT NOT NULL, 
	logs TEXT, 
	PRIMARY KEY (id)
);
INSERT INTO "jobs" VALUES('job-snapshot000001','changwon-precision','gyeongnam','run1','changwon-precision/run1','SUCCEEDED','python train.py --lr 0.01',NULL,'{"cpus": 2.0, "gpus": 1, "params": {"epochs": 1}, "kind": "train"}',2.0,1,'l4',2147483648,1780000001.0,1780000010.0,1780000110.0,1780000010.0,1,'job-snapshot000001','','epoch 1 loss 0.5
epoch 2 loss 0.3
한글 로그
');
INSERT INTO "jobs" VALUES('job-snapshot000002','changwon-precision','gyeongnam','run2','changwon-precision/run2','FAILED','python train.py --lr 0.01','predictive-maintenance','{"cpus": 1.5, "gpus": 0, "params": {"epochs": 2}, "kind": "train"}',1.5,0,NULL,3221225472,1780000002.0,1780000020.0,1780000050.0,1780000020.0,1,'job-snapshot000002','exit code 1','Traceback: boom
');
INSERT INTO "jobs" VALUES('job-snapshot000003','gimhae-robotics','gyeongnam','run3','gimhae-robotics/run3','STOPPED','python train.py --lr 0.01',NULL,'{"cpus": 4.0, "gpus": 2, "params": {"epochs": 3}, "kind": "train"}',4.0,2,'a100',4294967296,1780000003.0,1780000030.0,1780000090.0,1780000030.0,1,'job-snapshot000003','stopped','partial
');
INSERT INTO "jobs" VALUES('job-snapshot000004','gimhae-robotics','gyeongnam','run4','gimhae-robotics/run4','STOPPED','python train.py --lr 0.01','predictive-maintenance','{"cpus": 1.0, "gpus": 0, "params": {"epochs": 4}, "kind": "train"}',1.0,0,NULL,5368709120,1780000004.0,NULL,1780000040.0,NULL,0,NULL,'stopped before it started','');
INSERT INTO "jobs" VALUES('job-snapshot000005','gimhae-robotics','gyeongnam','run5','gimhae-robotics/run5','SUCCEEDED','python train.py --lr 0.01',NULL,'{"cpus": 8.0, "gpus": 0, "params": {"epochs": 5}, "kind": "train"}',8.0,0,NULL,6442450944,1780000005.0,1780000060.0,1780000360.0,1780000060.0,1,'job-snapshot000005','','done
');
INSERT INTO "jobs" VALUES('job-snapshot000006','changwon-precision','gyeongnam','run6','changwon-precision/run6','RUNNING','python train.py --lr 0.01','predictive-maintenance','{"cpus": 2.0, "gpus": 1, "params": {"epochs": 6}, "kind": "train"}',2.0,1,'l4',7516192768,1780000006.0,1780000070.0,NULL,1780000070.0,1,'job-snapshot000006','',NULL);
INSERT INTO "jobs" VALUES('job-snapshot000007','gimhae-robotics','gyeongnam','run7','gimhae-robotics/run7','PENDING','python train.py --lr 0.01',NULL,'{"cpus": 1.0, "gpus": 0, "params": {"epochs": 7}, "kind": "train"}',1.0,0,NULL,8589934592,1780000007.0,NULL,NULL,NULL,0,NULL,'queued',NULL);
CREATE TABLE tokens (
	token_hash VARCHAR(64) NOT NULL, 
	subject VARCHAR(64) NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	created_at FLOAT NOT NULL, 
	PRIMARY KEY (token_hash)
);
INSERT INTO "tokens" VALUES('cdf1c14854ca7acd9152a40718364f79fdb4648757904a5ed622fe32cb2c95fc','changwon-precision','tenant',1.79565104890222311017e+09);
INSERT INTO "tokens" VALUES('421558e03910284d94de6181be37d86a913fb78547a8972b7614a3ca50395ec6','gimhae-robotics','tenant',1.79565104890422773363e+09);
INSERT INTO "tokens" VALUES('74a9939a6ec718ddbb57c5c77f59a2d1723bfc04853a7f62cd9766bb0d1afe93','operator','operator',1.79565104890503287314e+09);
CREATE TABLE usage_totals (
	tenant VARCHAR(64) NOT NULL, 
	gpu_model VARCHAR(32) NOT NULL, 
	cpu_seconds FLOAT NOT NULL, 
	gpu_seconds FLOAT NOT NULL, 
	memory_byte_seconds FLOAT NOT NULL, 
	jobs_succeeded INTEGER NOT NULL, 
	jobs_failed INTEGER NOT NULL, 
	jobs_stopped INTEGER NOT NULL, 
	PRIMARY KEY (tenant, gpu_model)
);
INSERT INTO "usage_totals" VALUES('changwon-precision','l4',200.0,100.0,214748364800.0,1,0,0);
INSERT INTO "usage_totals" VALUES('changwon-precision','',45.0,0.0,96636764160.0,0,1,0);
INSERT INTO "usage_totals" VALUES('gimhae-robotics','a100',240.0,120.0,257698037760.0,0,0,1);
INSERT INTO "usage_totals" VALUES('gimhae-robotics','',2400.0,0.0,1932735283200.0,1,0,1);
CREATE INDEX ix_tokens_subject ON tokens (subject);
CREATE INDEX ix_jobs_tenant ON jobs (tenant);
CREATE INDEX ix_jobs_status ON jobs (status);
COMMIT;
