"""Airflow DAG file: the model's pipeline as an Airflow DAG (TFX's AirflowDagRunner).

  pip install 'official-tfx[airflow]'
  export AIRFLOW__CORE__DAGS_FOLDER=$PWD/pipelines/runners
  export OFFICIAL_TFX_MODEL=census OFFICIAL_TFX_FLAGS='--data_root=../shared/data'
  airflow db migrate
  airflow dags test census        # or: airflow dags trigger census, with a scheduler running

The DAG id is the model name; it runs when triggered. Airflow parses this file often: the
dataset's files are resolved (and checked) at every parse, so give a data root or a warm cache.
"""

from pipelines import engines

DAG = engines.airflow_dag()
