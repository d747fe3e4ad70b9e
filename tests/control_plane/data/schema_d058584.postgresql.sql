-- The control plane's database as released at commit d058584 (before Alembic): PostgreSQL 15.
-- Made by that commit's code -- Store(url), Ledger(store).install(), issue_token() for two tenants and the
-- operator, seven jobs added and ended through Store.update_job (so the ledger hook folded them) -- then dumped
-- with pg_dump --no-owner --no-privileges --inserts (SET lines removed). tests/control_plane/test_migrations.py loads it and upgrades it to head.
--
-- PostgreSQL database dump
--

--
-- Name: jobs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.jobs (
    id character varying(40) NOT NULL,
    tenant character varying(64) NOT NULL,
    region character varying(32) NOT NULL,
    name character varying(64) NOT NULL,
    experiment character varying(160) NOT NULL,
    status character varying(16) NOT NULL,
    entrypoint text NOT NULL,
    template character varying(64),
    spec json NOT NULL,
    cpus double precision NOT NULL,
    gpus integer NOT NULL,
    gpu_model character varying(32),
    memory_bytes bigint NOT NULL,
    submitted_at double precision NOT NULL,
    started_at double precision,
    ended_at double precision,
    last_seen_at double precision,
    dispatched boolean NOT NULL,
    backend_ref character varying(80),
    message text NOT NULL,
    logs text
);

--
-- Name: tokens; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.tokens (
    token_hash character varying(64) NOT NULL,
    subject character varying(64) NOT NULL,
    role character varying(16) NOT NULL,
    created_at double precision NOT NULL
);

--
-- Name: usage_totals; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.usage_totals (
    tenant character varying(64) NOT NULL,
    gpu_model character varying(32) NOT NULL,
    cpu_seconds double precision NOT NULL,
    gpu_seconds double precision NOT NULL,
    memory_byte_seconds double precision NOT NULL,
    jobs_succeeded integer NOT NULL,
    jobs_failed integer NOT NULL,
    jobs_stopped integer NOT NULL
);

--
-- Data for Name: jobs; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.jobs VALUES ('job-snapshot000001', 'changwon-precision', 'gyeongnam', 'run1', 'changwon-precision/run1', 'SUCCEEDED', 'python train.py --lr 0.01', NULL, '{"cpus": 2.0, "gpus": 1, "params": {"epochs": 1}, "kind": "train"}', 2, 1, 'l4', 2147483648, 1780000001, 1780000010, 1780000110, 1780000010, true, 'job-snapshot000001', '', 'epoch 1 loss 0.5
epoch 2 loss 0.3
한글 로그
');
INSERT INTO public.jobs VALUES ('job-snapshot000002', 'changwon-precision', 'gyeongnam', 'run2', 'changwon-precision/run2', 'FAILED', 'python train.py --lr 0.01', 'predictive-maintenance', '{"cpus": 1.5, "gpus": 0, "params": {"epochs": 2}, "kind": "train"}', 1.5, 0, NULL, 3221225472, 1780000002, 1780000020, 1780000050, 1780000020, true, 'job-snapshot000002', 'exit code 1', 'Traceback: boom
');
INSERT INTO public.jobs VALUES ('job-snapshot000003', 'gimhae-robotics', 'gyeongnam', 'run3', 'gimhae-robotics/run3', 'STOPPED', 'python train.py --lr 0.01', NULL, '{"cpus": 4.0, "gpus": 2, "params": {"epochs": 3}, "kind": "train"}', 4, 2, 'a100', 4294967296, 1780000003, 1780000030, 1780000090, 1780000030, true, 'job-snapshot000003', 'stopped', 'partial
');
INSERT INTO public.jobs VALUES ('job-snapshot000004', 'gimhae-robotics', 'gyeongnam', 'run4', 'gimhae-robotics/run4', 'STOPPED', 'python train.py --lr 0.01', 'predictive-maintenance', '{"cpus": 1.0, "gpus": 0, "params": {"epochs": 4}, "kind": "train"}', 1, 0, NULL, 5368709120, 1780000004, NULL, 1780000040, NULL, false, NULL, 'stopped before it started', '');
INSERT INTO public.jobs VALUES ('job-snapshot000005', 'gimhae-robotics', 'gyeongnam', 'run5', 'gimhae-robotics/run5', 'SUCCEEDED', 'python train.py --lr 0.01', NULL, '{"cpus": 8.0, "gpus": 0, "params": {"epochs": 5}, "kind": "train"}', 8, 0, NULL, 6442450944, 1780000005, 1780000060, 1780000360, 1780000060, true, 'job-snapshot000005', '', 'done
');
INSERT INTO public.jobs VALUES ('job-snapshot000006', 'changwon-precision', 'gyeongnam', 'run6', 'changwon-precision/run6', 'RUNNING', 'python train.py --lr 0.01', 'predictive-maintenance', '{"cpus": 2.0, "gpus": 1, "params": {"epochs": 6}, "kind": "train"}', 2, 1, 'l4', 7516192768, 1780000006, 1780000070, NULL, 1780000070, true, 'job-snapshot000006', '', NULL);
INSERT INTO public.jobs VALUES ('job-snapshot000007', 'gimhae-robotics', 'gyeongnam', 'run7', 'gimhae-robotics/run7', 'PENDING', 'python train.py --lr 0.01', NULL, '{"cpus": 1.0, "gpus": 0, "params": {"epochs": 7}, "kind": "train"}', 1, 0, NULL, 8589934592, 1780000007, NULL, NULL, NULL, false, NULL, 'queued', NULL);

--
-- Data for Name: tokens; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.tokens VALUES ('11ab22395f23a0aa3d15679f9f407e08ced6a4bdf88efc09bfe43fc9e3b6805f', 'changwon-precision', 'tenant', 1795651056.0832632);
INSERT INTO public.tokens VALUES ('f09f4437fbd13fe051cdc93abd1b92c0c4cb2d1d07fd9203018e29f615e11685', 'gimhae-robotics', 'tenant', 1795651056.0861058);
INSERT INTO public.tokens VALUES ('1bb648f5fa0072399fcdd4e008c2fdc1547e710c8c86527863d79becde5370f4', 'operator', 'operator', 1795651056.0873704);

--
-- Data for Name: usage_totals; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.usage_totals VALUES ('changwon-precision', 'l4', 200, 100, 214748364800, 1, 0, 0);
INSERT INTO public.usage_totals VALUES ('changwon-precision', '', 45, 0, 96636764160, 0, 1, 0);
INSERT INTO public.usage_totals VALUES ('gimhae-robotics', 'a100', 240, 120, 257698037760, 0, 0, 1);
INSERT INTO public.usage_totals VALUES ('gimhae-robotics', '', 2400, 0, 1932735283200, 1, 0, 1);

--
-- Name: jobs jobs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (id);

--
-- Name: tokens tokens_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.tokens
    ADD CONSTRAINT tokens_pkey PRIMARY KEY (token_hash);

--
-- Name: usage_totals usage_totals_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.usage_totals
    ADD CONSTRAINT usage_totals_pkey PRIMARY KEY (tenant, gpu_model);

--
-- Name: ix_jobs_status; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_jobs_status ON public.jobs USING btree (status);

--
-- Name: ix_jobs_tenant; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_jobs_tenant ON public.jobs USING btree (tenant);

--
-- Name: ix_tokens_subject; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_tokens_subject ON public.tokens USING btree (subject);

--
-- PostgreSQL database dump complete
--
