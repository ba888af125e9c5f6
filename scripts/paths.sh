# Sourced by the numbered scripts right after they cd to the repository root.
# A folder the user passes in the environment (DATA_DIR=..., MODEL_DIR=...) is taken relative to
# the folder the script was started from, where the user typed it; the defaults (data_dir/,
# models/, pretrained/, submissions/, demo_data/) live in the repository root (all in .gitignore).
# The script sets CALLER_DIR="$PWD" before its cd.

dir_from_env() {  # dir_from_env NAME DEFAULT: $NAME made absolute, or DEFAULT (in the repository) when unset or empty
  local value="${!1:-}"
  if [ -z "$value" ]; then
    # absolute too, so that messages name it unambiguously wherever the user is
    if [[ $2 = /* ]]; then echo "$2"; else echo "$PWD/$2"; fi
  elif [[ $value = /* ]]; then
    echo "$value"
  else
    echo "${CALLER_DIR:?the script must set CALLER_DIR before its cd}/$value"
  fi
}
