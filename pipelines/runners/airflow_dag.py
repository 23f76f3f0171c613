"""Airflow DAG file: the model's pipeline as an Airflow DAG (TFX's AirflowDagRunner).

  pip install 'official-tfx[airflow]'
  export AIRFLOW__CORE__DAGS_FOLDER=$PWD/pipelines/runners
  export OFFICIAL_TFX_MODEL=census OFFICIAL_TFX_FLAGS='--data_root=../shared/data'
  export AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT=300 AIRFLOW__CORE__DAG_FILE_PROCESSOR_TIMEOUT=330
  airflow db migrate
  airflow dags test census        # or: airflow dags trigger census, with a scheduler running

With PostgreSQL as Airflow's database, the LocalExecutor runs independent tasks side by side
(README, "Airflow on PostgreSQL with the LocalExecutor"):

  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=postgresql+psycopg2://airflow:airflow@127.0.0.1/airflow
  export AIRFLOW__CORE__EXECUTOR=LocalExecutor AIRFLOW__CORE__PARALLELISM=2
  airflow db migrate && airflow dags reserialize && airflow dags unpause census
  airflow dags trigger census && airflow scheduler

The DAG id is the model name; it runs when triggered. Airflow parses this file often: the
dataset's files are resolved (and checked) at every parse, so give a data root or a warm cache.
A parse imports TensorFlow and TFX's components: 22 s on a 2-core machine, near Airflow's default
30 s limit for importing a DAG file, hence the raised timeouts above.
"""

from pipelines import engines

DAG = engines.airflow_dag()
