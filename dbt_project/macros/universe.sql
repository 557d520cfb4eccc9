{#- The configured universe and the pair relations derived from it at compile
    time (features.md: Base data, items 6-8). -#}

{% macro bqx_pairs() -%}
    {%- set raw = var('pairs') -%}
    {%- if raw is string -%}
        {%- set items = raw.split(',') -%}
    {%- else -%}
        {%- set items = raw -%}
    {%- endif -%}
    {%- set out = [] -%}
    {%- for p in items -%}
        {%- set p = (p | string | trim | upper) -%}
        {%- if p and p not in out -%}
            {%- if (p.split('_') | length) != 2 -%}
                {{ exceptions.raise_compiler_error("var pairs: bad pair id '" ~ p ~ "' (expected BASE_QUOTE)") }}
            {%- endif -%}
            {%- do out.append(p) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if out | length == 0 -%}
        {{ exceptions.raise_compiler_error("var pairs: the universe is empty") }}
    {%- endif -%}
    {{ return(out | sort) }}
{%- endmacro %}

{% macro bqx_pairs_sql() -%}
    {%- for p in bqx_pairs() -%}'{{ p }}'{{ ", " if not loop.last }}{%- endfor -%}
{%- endmacro %}

{% macro bqx_relation(p, o) -%}
    {#- Category of pair o seen from pair p = B/Q, or none. -#}
    {%- set b, q = p.split('_') -%}
    {%- set ob, oq = o.split('_') -%}
    {%- if p == o -%}{{ return(none) }}
    {%- elif ob == b and oq != q -%}{{ return('base_base') }}
    {%- elif oq == q and ob != b -%}{{ return('quote_quote') }}
    {%- elif oq == b -%}{{ return('base_quote') }}
    {%- elif ob == q -%}{{ return('quote_base') }}
    {%- else -%}{{ return(none) }}
    {%- endif -%}
{%- endmacro %}

{% macro bqx_corr_links() -%}
    {#- Unordered pairs (p < o) sharing a currency, with both categories. -#}
    {%- set pairs = bqx_pairs() -%}
    {%- set out = [] -%}
    {%- for p in pairs -%}
        {%- for o in pairs -%}
            {%- if p < o -%}
                {%- set rel_po = bqx_relation(p, o) -%}
                {%- if rel_po is not none -%}
                    {%- do out.append({'p': p, 'o': o, 'rel_po': rel_po, 'rel_op': bqx_relation(o, p)}) -%}
                {%- endif -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ return(out) }}
{%- endmacro %}

{% macro bqx_triangles() -%}
    {#- For P = A/C, every third currency B whose two legs exist: legs with
        sign +1 (A/B, B/C) or -1 (inverted quote). -#}
    {%- set pairs = bqx_pairs() -%}
    {%- set out = [] -%}
    {%- set currencies = [] -%}
    {%- for p in pairs -%}
        {%- for c in p.split('_') -%}
            {%- if c not in currencies -%}{%- do currencies.append(c) -%}{%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- for p in pairs -%}
        {%- set a, c = p.split('_') -%}
        {%- for b in currencies | sort -%}
            {%- if b != a and b != c -%}
                {%- set leg1 = none -%}{%- set s1 = 0 -%}
                {%- set leg2 = none -%}{%- set s2 = 0 -%}
                {%- if (a ~ '_' ~ b) in pairs -%}
                    {%- set leg1 = a ~ '_' ~ b -%}{%- set s1 = 1 -%}
                {%- elif (b ~ '_' ~ a) in pairs -%}
                    {%- set leg1 = b ~ '_' ~ a -%}{%- set s1 = -1 -%}
                {%- endif -%}
                {%- if (b ~ '_' ~ c) in pairs -%}
                    {%- set leg2 = b ~ '_' ~ c -%}{%- set s2 = 1 -%}
                {%- elif (c ~ '_' ~ b) in pairs -%}
                    {%- set leg2 = c ~ '_' ~ b -%}{%- set s2 = -1 -%}
                {%- endif -%}
                {%- if leg1 is not none and leg2 is not none -%}
                    {%- do out.append({'pair': p, 'via': b, 'leg1': leg1, 's1': s1, 'leg2': leg2, 's2': s2}) -%}
                {%- endif -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ return(out) }}
{%- endmacro %}

{#- The pairs that take part in some triangle of bqx_triangles (as P or a
    leg), in a fixed order: the positions of the per-timestamp arrays of
    features_tri and its tail bound. -#}
{% macro bqx_triangle_pairs() -%}
    {%- set out = [] -%}
    {%- for t in bqx_triangles() -%}
        {%- for p in [t.pair, t.leg1, t.leg2] if p not in out -%}{%- do out.append(p) -%}{%- endfor -%}
    {%- endfor -%}
    {{ return(out) }}
{%- endmacro %}

{% macro bqx_pair_currencies_sql() -%}
    {#- values rows (pair, base, quote) of the universe. -#}
    {%- for p in bqx_pairs() -%}
        {%- set b, q = p.split('_') -%}
        select '{{ p }}' as pair, '{{ b }}' as base_ccy, '{{ q }}' as quote_ccy
        {{ "union all" if not loop.last }}
    {% endfor -%}
{%- endmacro %}
