{#- features.md item 1: prices indexed to 100 at the baseline close c0. -#}
{{ bqx_mart_config() }}

with

{{ bqx_tail_inputs(lookback=0) }},

{{ bqx_base_closes_cte() }}

select
    inputs.pair,
    inputs.bar_start_at,
    inputs.bar_start_at + interval '1 minute' as event_timestamp,
    100 * inputs.close_price / base_closes.c0 as close_idx,
    100 * inputs.open_price / base_closes.c0 as open_idx,
    100 * inputs.high_price / base_closes.c0 as high_idx,
    100 * inputs.low_price / base_closes.c0 as low_idx
from inputs
left join base_closes on inputs.pair = base_closes.pair
where inputs.is_output
